"""Behaviour of a fine-tuning run at every checkpoint: target accuracy, the prior tasks, forward KL against the
base and, when configured, general knowledge; cached per checkpoint, the step-0 row shared between runs.

Writes into the run directory::

    RUN_DIR/behaviour/checkpoint-N.json   behaviour at each checkpoint (cached; reused on --resume)
    RUN_DIR/behaviour.json, behaviour.csv the table over checkpoints
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from forgetlens.artefacts import read_json, write_json
from forgetlens.config.options import FinetuneConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.behaviour import (
    chat_prompts,
    cut_share,
    divergence_view,
    forward_kl,
    general_probe,
    generate,
    prior_behaviour,
    target_accuracy,
)
from forgetlens.models.loading import configure_threads, load_model
from forgetlens.pipeline.results import BEHAVIOUR_ROW, KL_SAMPLES, behaviour_csv, read_record
from forgetlens.progress import track
from forgetlens.tasks.registry import chosen_task_names, get_task
from forgetlens.training.checkpoints import checkpoint_dirs, load_checkpoint
from forgetlens.training.data import target_splits
from forgetlens.utils import atomic_write_text

if TYPE_CHECKING:  # annotations only
    from forgetlens.progress import Logger

Circuits = dict[str, list[tuple[int, int]]]
"""{prior task: the heads of its base circuit}: what a behaviour row's circuit measure patches jointly."""


PRIOR_EVAL_SEED = 424242
"""Seed of the prior-task prompts behaviour is measured on: fixed, so that every checkpoint of every run and seed is
scored on the same prompts (retention is a ratio to step 0 on them), and far from the small seeds that draw
circuits' discovery and evaluation prompts."""


BASE_BEHAVIOUR_FIELDS = (
    "model",
    "data",
    "synthetic_target",
    "seed",
    "eval_fraction",
    "variants_per_question",
    "max_records",
    "prior_tasks",
    "prior_eval_examples",
    "prior_per_prompt",
    "kl_samples",
    "kl_prompts",
    "kl_max_new_tokens",
    "max_new_tokens",
    "general_eval",
    "chat_kl_tokens",
)
"""The options that decide the base model's behaviour row (step 0): runs that agree on all of them share it."""


def base_behaviour_key(cfg: FinetuneConfig, circuits: Circuits | None = None) -> str:
    """A file name for the step-0 behaviour row that every run with these evaluation options (and circuits)
    shares."""
    fields: dict = {name: getattr(cfg, name) for name in BASE_BEHAVIOUR_FIELDS}
    if not fields["prior_per_prompt"]:  # added later: runs recorded before it keep their key
        del fields["prior_per_prompt"]
    if circuits:
        fields["circuits"] = {task: sorted(map(list, heads)) for task, heads in sorted(circuits.items())}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16] + ".json"


def measured_steps(run_dir: Path) -> dict[int, Path]:
    """{step: checkpoint directory} of every checkpoint with weights or a cached behaviour row, by step; a row
    cached before the weights were deleted (to free disk) still counts. Refuses a run with neither."""
    steps = dict(checkpoint_dirs(run_dir))
    for row in (Path(run_dir) / "behaviour").glob("checkpoint-*.json"):
        step = row.stem.removeprefix("checkpoint-")
        if step.isdigit():
            steps.setdefault(int(step), Path(run_dir) / "checkpoints" / row.stem)
    if not steps:
        raise ForgetlensError(f"{Path(run_dir) / 'checkpoints'}: no checkpoint weights and no measured behaviour")
    return dict(sorted(steps.items()))


def behaviour_probe(
    cfg: FinetuneConfig,
    eval_records: list[dict],
    samples_cache: Path | None = None,
    circuits: Circuits | None = None,
):
    """``behaviour_row(step, checkpoint_dir) -> row``: target accuracy, prior tasks, forward KL against the base (on
    completions sampled once from the base; kept in ``samples_cache`` for other runs with the same evaluation
    options), when configured the general probe, and with ``circuits`` ({task: heads}) each circuit's joint total
    change on the prior-task prompts."""
    base = load_model(cfg.model)
    configure_threads(base.model, cfg.threads)
    tokenizer = base.tokenizer
    tasks = [get_task(t) for t in chosen_task_names(cfg.prior_tasks, model=cfg.model)]
    kl_records = eval_records[: cfg.kl_prompts] if cfg.kl_prompts else eval_records
    kl_prompts = [p for p in chat_prompts(tokenizer, kl_records) for _ in range(cfg.kl_samples)]
    kl_cap = cfg.kl_max_new_tokens or cfg.max_new_tokens
    if samples_cache is not None and samples_cache.exists():
        samples = read_record(samples_cache, KL_SAMPLES, "the base model's sampled completions")
        if len(samples) != len(kl_prompts):
            raise ForgetlensError(
                f"{samples_cache}: {len(samples)} sampled completions for {len(kl_prompts)} KL prompts; expected the "
                "samples of this run's evaluation options (delete the file to sample again)"
            )
    else:
        samples = generate(base.model, tokenizer, kl_prompts, kl_cap, sample=True, seed=cfg.seed)
        if samples_cache is not None:
            samples_cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(samples_cache, samples)
    general = general_probe(base.model, tokenizer, cfg) if cfg.general_eval else None
    base_logps: dict = {}  # the base's log-probabilities on the KL samples, computed at the first checkpoint

    def behaviour_row(step: int, path: Path) -> dict:
        model = base.model if step == 0 else load_checkpoint(path, cfg.model)
        acc, per_record = target_accuracy(model, tokenizer, eval_records, cfg.max_new_tokens)
        prior = prior_behaviour(
            model,
            tokenizer,
            tasks,
            cfg.prior_eval_examples,
            PRIOR_EVAL_SEED,
            per_prompt=cfg.prior_per_prompt,
            circuits=circuits,
            base=base.model,
        )
        kl = forward_kl(base.model, model, tokenizer, kl_prompts, samples, base_cache=base_logps)
        row = {
            "step": step,
            "target_accuracy": acc,
            "target_correct": per_record,
            "kl_forward": sum(kl) / len(kl),
            "kl_samples_cut": cut_share(samples, kl_cap, tokenizer),
            "prior": prior,
        }
        if general is not None:
            row["general"] = general.scores(base.model, model)
        return row

    def divergence(path: Path) -> dict:
        """Where checkpoint ``path`` departs from the base in the text (``measure.behaviour.divergence_view``), on
        the first :data:`DIVERGENCE_PROMPTS` target prompts' base samples and, with the general probe, chat prompts."""
        model = load_checkpoint(path, cfg.model)
        n = DIVERGENCE_PROMPTS
        out = {"target": divergence_view(base.model, model, tokenizer, kl_prompts[:n], samples[:n], kl_cap)}
        if general is not None:
            out["chat"] = divergence_view(
                base.model, model, tokenizer, general.chat_prompts[:n], general.chat_samples[:n], cfg.chat_kl_tokens
            )
        return out

    behaviour_row.divergence = divergence  # type: ignore[attr-defined]
    return behaviour_row


DIVERGENCE_PROMPTS = 4
"""Prompts (of the target, and of general chat) whose per-token divergence a run's last checkpoint keeps."""


class CheckpointEvaluator:
    """A run's behaviour rows, one per checkpoint, each measured once and cached in ``RUN_DIR/behaviour/``; the
    step-0 row (and the base's KL samples) shared through ``shared_base`` with other runs that evaluate alike.
    The base model loads only when a row has to be measured."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        run_dir: Path,
        shared_base: Path | None = None,
        circuits: Circuits | None = None,
    ):
        self.cfg, self.run_dir, self.circuits = cfg, Path(run_dir), circuits
        self.cache = self.run_dir / "behaviour"
        self.shared = shared_base / base_behaviour_key(cfg, circuits) if shared_base is not None else None
        _, self.eval_records = target_splits(cfg)
        self._measure: Callable[[int, Path], dict] | None = None

    def divergence(self, step: int, path: Path) -> dict:
        """``divergence.json``: where checkpoint ``step`` (the run's last) departs from the base in the text,
        measured once per step."""
        record = self.run_dir / "divergence.json"
        if record.exists():
            stored = read_json(record)
            if stored.get("step") == step:
                return stored
        measure = self._probe()
        view = {"step": step, **measure.divergence(path)}  # type: ignore[attr-defined]
        write_json(record, view)
        return view

    def _probe(self) -> Callable[[int, Path], dict]:
        if self._measure is None:
            samples = self.shared.with_suffix(".kl-samples.json") if self.shared is not None else None
            self._measure = behaviour_probe(self.cfg, self.eval_records, samples, self.circuits)
        return self._measure

    def cached(self, step: int) -> Path:
        return self.cache / f"checkpoint-{step}.json"

    def row(self, step: int, path: Path) -> dict:
        """Checkpoint ``step``'s behaviour row (``path``: its directory), measured unless cached."""
        cached = self.cached(step)
        if cached.exists():
            return read_record(cached, BEHAVIOUR_ROW, "a behaviour row")
        if step == 0 and self.shared is not None and self.shared.exists():
            row = read_record(self.shared, BEHAVIOUR_ROW, "a behaviour row")
        else:
            row = self._probe()(step, path)
            if step == 0 and self.shared is not None:
                self.shared.parent.mkdir(parents=True, exist_ok=True)
                write_json(self.shared, row)
        self.cache.mkdir(exist_ok=True)
        write_json(cached, row)
        return row


def evaluate_checkpoints(
    cfg: FinetuneConfig,
    run_dir: Path,
    log: Logger = print,
    shared_base: Path | None = None,
    circuits: Circuits | None = None,
) -> list[dict]:
    """Behaviour at every checkpoint (cached per checkpoint); writes behaviour.json and behaviour.csv.

    ``shared_base``: a folder where the step-0 row is kept for other runs with the same evaluation options
    (a study's SFT and RL runs of one seed measure the same base model on the same questions).  ``circuits``:
    {task: heads} whose joint change each row also measures (:func:`behaviour_probe`).
    """
    evaluator = CheckpointEvaluator(cfg, run_dir, shared_base, circuits)
    steps = measured_steps(run_dir)
    steps = {0: run_dir / "checkpoints" / "checkpoint-0", **steps}  # step 0: the base model, always measured
    rows = [
        evaluator.row(step, path)
        for step, path in track(list(steps.items()), f"evaluate {run_dir.name}", "checkpoints")
    ]
    base_prior = rows[0]["prior"]
    for row in rows:
        for name, values in row["prior"].items():
            ref = base_prior[name]
            values["retention_accuracy"] = values["accuracy"] / ref["accuracy"] if ref["accuracy"] else float("nan")
            values["retention_logit_diff"] = (
                values["logit_diff"] / ref["logit_diff"] if ref["logit_diff"] else float("nan")
            )
    table = {
        "method": cfg.method,
        "seed": cfg.seed,
        "n_eval_records": len(evaluator.eval_records),
        "accuracy_threshold": cfg.accuracy_threshold,
        "steps_to_threshold": next((r["step"] for r in rows if r["target_accuracy"] >= cfg.accuracy_threshold), None),
        "checkpoints": rows,
    }
    write_json(run_dir / "behaviour.json", table)
    atomic_write_text(run_dir / "behaviour.csv", behaviour_csv(rows))
    last = max(steps)
    if last > 0 and (run_dir / "checkpoints" / f"checkpoint-{last}").is_dir():
        evaluator.divergence(last, steps[last])
    return rows
