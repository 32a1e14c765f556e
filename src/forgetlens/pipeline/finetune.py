"""One fine-tuning run, SFT or RL, from base model to behaviour table.

Run directory::

    RUN_DIR/config.json          FinetuneConfig, versions, seed
    RUN_DIR/checkpoints/checkpoint-N/   step 0 is the base model; then every ``checkpoint_every`` steps
    RUN_DIR/budget.json          prompts, tokens, wall time, generation share (written when training is done)
    RUN_DIR/training_log.json    the trainer's log history (loss, rewards, zero-variance groups, ...)
    RUN_DIR/behaviour/, behaviour.json, behaviour.csv   behaviour at every checkpoint (``pipeline/evaluate.py``)

``--resume`` continues training from the newest trainer checkpoint (optimizer, scheduler and RNG state
included) and re-evaluates only checkpoints without a cached behaviour file.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forgetlens.artefacts import claim_run_dir, read_json, record_field, write_json
from forgetlens.config.loading import config_differences
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import FinetuneConfig, KeepWeights
from forgetlens.errors import ForgetlensError
from forgetlens.models.loading import check_model, configure_threads, load_model, load_tokenizer, model_record
from forgetlens.pipeline.evaluate import CheckpointEvaluator, Circuits, evaluate_checkpoints, measured_steps
from forgetlens.tasks.registry import chosen_task_names
from forgetlens.training.checkpoints import (
    check_resume_state,
    checkpoint_dirs,
    drop_resume_state,
    load_checkpoint,
    remove_checkpoint,
)
from forgetlens.training.data import conversational_rows, prompt_length_problems, target_splits, training_schedule
from forgetlens.training.regularizers import build_regularizers
from forgetlens.utils import is_main_process, release_freed_memory, versions, wait_for_everyone

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel

    from forgetlens.progress import Logger


def validate(cfg: FinetuneConfig, prefix: str = "") -> None:
    """Every check that can fail before a directory is made or a weight loads: the options, the model (path or
    cache, config, architecture), the data, and that every prompt used fits the model's positions."""
    problems = cfg.problems(prefix)
    if cfg.init_from is not None and not Path(cfg.init_from).exists():
        problems.append(f"{prefix}init_from: {cfg.init_from} does not exist; expected a run or checkpoint directory")
    if problems:
        raise ForgetlensError("\n".join(problems))
    info = check_model(cfg.model)
    train, evaluation = target_splits(cfg)
    used = {json.dumps(r, sort_keys=True): r for r in training_schedule(train, cfg) + evaluation}
    new_tokens = max(cfg.max_new_tokens, cfg.rl.max_completion_length, cfg.kl_max_new_tokens or 0)
    problems = prompt_length_problems(list(used.values()), load_tokenizer(cfg.model), info.max_positions, new_tokens)
    if problems:  # one line: the first such record, and how many more there are
        more = f" ({len(problems) - 1} more records are too long)" if len(problems) > 1 else ""
        raise ForgetlensError(problems[0] + more)


class _GenerationTimer:
    """Wraps ``model.generate`` to add up the time RL spends sampling."""

    def __init__(self, model: PreTrainedModel):
        self.seconds, self._generate = 0.0, model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._generate(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def _trainer_tokens(history: list[dict], logged: list[dict] | None) -> float | None:
    """Tokens the trainer processed over the whole run (TRL's ``num_tokens``).  TRL's SFT trainer restarts that
    counter when it resumes from a checkpoint (its GRPO trainer restores it), so a restarted count gets the
    count the resumed checkpoint had logged (``logged``, its log history; None: not resumed) added back."""
    counts = [h["num_tokens"] for h in history if "num_tokens" in h]
    if not counts:
        return None
    if logged is None:
        return counts[-1]
    before = [h["num_tokens"] for h in logged if "num_tokens" in h]
    after = [h["num_tokens"] for h in history[len(logged) :] if "num_tokens" in h]  # logged since the resume
    if before and after and after[0] < before[-1]:  # the counter started again from zero
        return before[-1] + after[-1]
    return counts[-1]


def _report_divergence(run_dir: Path, step: int, name: str, value: float) -> None:
    """Remove every checkpoint from the diverged step on (their weights are not finite) and raise one
    ForgetlensError naming the step and the last good checkpoint; ``budget.json`` is not written, so the run is
    not complete."""
    for s, directory in checkpoint_dirs(run_dir):
        if s >= step:
            remove_checkpoint(run_dir, directory)
    good = [d.name for s, d in checkpoint_dirs(run_dir) if s > 0]
    kept = f"kept the last good checkpoint, {good[-1]}" if good else "no checkpoint before it was kept"
    raise ForgetlensError(
        f"{run_dir}: training diverged at step {step} ({name} = {value}); {kept}; lower the learning rate"
    )


def starting_checkpoint(path: Path) -> Path:
    """The checkpoint ``FinetuneConfig.init_from`` names: a run directory's last checkpoint, or the directory
    itself when it holds weights; one ForgetlensError naming it otherwise."""
    if (path / "checkpoints").is_dir():
        dirs = [d for s, d in checkpoint_dirs(path) if s > 0]
        if dirs:
            return dirs[-1]
    if (path / "model.safetensors").exists() or (path / "adapter_config.json").exists():
        return path
    raise ForgetlensError(
        f"init_from: {path} is neither a run directory with a trained checkpoint nor a checkpoint directory"
    )


@dataclass
class CheckpointWatch:
    """What happens as each checkpoint is written (``forgetlens frontier``): its behaviour row is measured then
    (``evaluator``), training stops once ``stop(history, zero_signal)`` names a reason, ``history`` being (step,
    held-out target accuracy) of every checkpoint so far, step 0 included, and ``zero_signal`` [steps] the share of
    the groups each RL step trained on that carried no reward signal (empty for SFT); with ``keep_weights="last"``
    only the newest checkpoint's weights stay on disk (the others' rows are measured and cached first)."""

    evaluator: CheckpointEvaluator
    """Measures and caches each checkpoint's behaviour row."""
    stop: Callable[[list[tuple[int, float]], list[float]], str | None]
    """Why training stops after the checkpoints measured so far (None: it goes on)."""
    keep_weights: KeepWeights = "all"
    """``all``: every checkpoint's weights stay; ``last``: only the newest checkpoint's."""

    seconds: float = 0.0
    """Wall time spent measuring (inside training's wall time: subtracted from it in ``budget.json``)."""
    reason: str | None = None
    """Why training stopped, once ``stop`` said so."""

    def seen(self, run_dir: Path, log_history: list[dict]) -> bool:
        """Measure every checkpoint not yet measured, drop old weights when asked, and say whether to stop
        (``log_history``: the trainer's log so far, one entry per step and more).

        Every random generator training draws from is left as it was: a run measured as it trains, and one resumed
        from a checkpoint (whose saved generator state predates the measurement), train identically."""
        import random

        import numpy as np

        start = time.perf_counter()
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            steps = {0: run_dir / "checkpoints" / "checkpoint-0", **measured_steps(run_dir)}
            history = [(step, self.evaluator.row(step, path)["target_accuracy"]) for step, path in steps.items()]
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        self.seconds += time.perf_counter() - start
        if self.keep_weights == "last":
            trained = [(s, d) for s, d in checkpoint_dirs(run_dir) if s > 0]
            for _, directory in trained[:-1]:
                remove_checkpoint(run_dir, directory)
        self.reason = self.stop(history, trained_zero_signal(log_history))
        return self.reason is not None


def trained_zero_signal(log_history: list[dict]) -> list[float]:
    """[steps] the share of the groups each RL step trained on without reward variance, from a trainer's log:
    ``frac_trained_zero_std`` under dynamic sampling, else TRL's ``frac_reward_zero_std`` (every sampled group is
    trained on); empty for SFT."""
    return [
        float(h.get("frac_trained_zero_std", h["frac_reward_zero_std"]))
        for h in log_history
        if "frac_reward_zero_std" in h
    ]


def _watch_callback(watch: CheckpointWatch, run_dir: Path):
    """A trainer callback that hands every saved checkpoint to ``watch`` and stops training when it says so."""
    from transformers import TrainerCallback

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if watch.seen(run_dir, state.log_history):
                control.should_training_stop = True

    return Watch()


def train(
    cfg: FinetuneConfig, run_dir: Path, resume: bool, log: Logger = print, watch: CheckpointWatch | None = None
) -> dict:
    """Train and checkpoint; returns the budget record, written last as ``budget.json`` (the run's training is
    complete once it exists).  ``watch``: see :class:`CheckpointWatch`; a resumed run that had already reached its
    stopping point trains no further."""
    from datasets import Dataset

    loaded = load_model(cfg.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    if cfg.init_from is not None:
        first = starting_checkpoint(Path(cfg.init_from))
        log(f"{cfg.method} starts from {first}")
        model = load_checkpoint(first, cfg.model)
    configure_threads(model, cfg.threads)
    train_records, _ = target_splits(cfg)
    schedule = training_schedule(train_records, cfg)
    method = finetune_method(cfg.method)
    kind = method.trainer
    dataset = Dataset.from_list(conversational_rows(schedule, with_completion=method.trains_on_answers))
    ckpt_root = run_dir / "checkpoints"
    if is_main_process():
        ckpt_root.mkdir(parents=True, exist_ok=True)
    regularizers = build_regularizers(cfg, model, tokenizer, lambda: load_model(cfg.model).model)
    model.train()
    timer = _GenerationTimer(model) if kind == "rl" else None
    callbacks = [_watch_callback(watch, run_dir)] if watch is not None else []
    if kind == "sft":
        from forgetlens.training.trainers import build_sft_trainer

        trainer = build_sft_trainer(
            model, tokenizer, dataset, cfg, ckpt_root, callbacks=callbacks, regularizers=regularizers
        )
    else:
        from forgetlens.training.trainers import build_rl_trainer

        trainer = build_rl_trainer(
            model, tokenizer, dataset, cfg, ckpt_root, callbacks=callbacks, regularizers=regularizers
        )
    monitor = None
    if cfg.monitor.every > 0:
        from forgetlens.measure.monitor import CircuitMonitor

        mon = cfg.monitor
        monitor = CircuitMonitor(
            load_model(cfg.model).model,
            tokenizer,
            tasks=chosen_task_names(mon.tasks, cfg.prior_tasks, model=cfg.model),
            every=mon.every,
            n_prompts=mon.n_prompts,
            threshold=mon.threshold,
            action=mon.action,
            seed=cfg.seed,
        ).attach(trainer)
    resume_from = None
    trained = [d for s, d in checkpoint_dirs(run_dir) if s > 0 and (d / "trainer_state.json").exists()]
    if resume and trained:
        resume_from = str(trained[-1])
        log(f"resuming {cfg.method} from {trained[-1].name}")
    start = time.perf_counter()
    logged = None  # read now: a watch keeping only the newest weights deletes the resumed checkpoint later
    if resume_from is not None:
        check_resume_state(Path(resume_from))
        logged = record_field(read_json(Path(resume_from) / "trainer_state.json"), "log_history", resume_from, list)
    # a run killed after its last checkpoint's measurement said stop: it trains no further
    if resume_from is not None and watch is not None and watch.seen(run_dir, logged or []):
        history = logged or []
        last_step = int(Path(resume_from).name.removeprefix("checkpoint-"))
    else:
        trainer.train(resume_from_checkpoint=resume_from)
        history, last_step = trainer.state.log_history, trainer.state.global_step
        if getattr(trainer, "diverged", None) is not None:
            _report_divergence(run_dir, *trainer.diverged)
    seconds = time.perf_counter() - start
    if not is_main_process():
        return {}
    write_json(run_dir / "training_log.json", history)
    if monitor is not None:
        write_json(
            run_dir / "monitor.json",
            {
                "history": monitor.history,
                "setup_seconds": round(monitor.setup_seconds, 2),
                "seconds": round(monitor.seconds, 2),
            },
        )
    prompt_tokens = sum(
        len(
            tokenizer(
                tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False,
            )["input_ids"]
        )
        for r in dataset
    )
    budget: dict[str, object] = {
        "method": cfg.method,
        "optimizer_steps": last_step,
        "stopped_before_steps": last_step < cfg.steps,
        "stop_reason": watch.reason if watch is not None else None,
        "training_prompts": len(schedule),
        "distinct_training_questions": len({r["question"] for r in train_records}),
        "prompt_tokens": prompt_tokens * (cfg.rl.num_generations if kind == "rl" else 1),
        "trainer_num_tokens": _trainer_tokens(history, logged),
        "wall_seconds_this_session": round(seconds - (watch.seconds if watch else 0.0), 2),
        "evaluation_seconds_this_session": round(watch.seconds, 2) if watch else 0.0,
        "generation_seconds_this_session": (
            round(timer.seconds + getattr(trainer, "shared_prefill_seconds", 0.0), 2) if timer else 0.0
        ),
        "resumed_from": resume_from,
        "frac_reward_zero_std": [h["frac_reward_zero_std"] for h in history if "frac_reward_zero_std" in h],
        "frac_trained_zero_std": [h["frac_trained_zero_std"] for h in history if "frac_trained_zero_std" in h],
        "reward": [h["reward"] for h in history if "reward" in h],
    }
    if kind == "rl":  # which scoring this session's loss passes took (training/shared_prompt.py)
        budget["scoring_calls_this_session"] = {
            "shared_prompt": getattr(trainer, "shared_prompt_calls", 0),
            "trl": getattr(trainer, "trl_scoring_calls", None),  # None: not counted (the option is off)
        }
        budget["generation_calls_this_session"] = {  # training/rollouts.py
            "shared_prefill": getattr(trainer, "shared_prefill_calls", 0),
            "trl": getattr(trainer, "trl_generation_calls", None),
        }
    write_json(run_dir / "budget.json", budget)
    return budget


def finetune(
    cfg: FinetuneConfig,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    log: Logger = print,
    shared_base: Path | None = None,
    circuits: Circuits | None = None,
    stop: Callable[[list[tuple[int, float]], list[float]], str | None] | None = None,
    keep_weights: KeepWeights = "all",
) -> list[dict]:
    """Validate, train (or resume), checkpoint and measure behaviour; returns the behaviour rows
    (``shared_base``, ``circuits``: see :func:`evaluate_checkpoints`).  ``stop`` and ``keep_weights``: each
    checkpoint is measured as it is written, training stops when ``stop`` names a reason, and only the newest weights
    stay with ``keep_weights="last"`` (:class:`CheckpointWatch`)."""
    validate(cfg)  # nothing is written before every input is checked
    run_dir = Path(run_dir)
    record_path = run_dir / "config.json"
    if resume and record_path.exists():
        stored = record_field(read_json(record_path), "config", record_path)
        changed = config_differences(stored, json.loads(json.dumps(dataclasses.asdict(cfg))))
        if changed:
            raise ForgetlensError(
                f"{record_path}: --resume with options the run was not started with: {'; '.join(changed)}"
            )
    watch = None
    if stop is not None or keep_weights != "all":
        evaluator = CheckpointEvaluator(cfg, run_dir, shared_base, circuits)
        watch = CheckpointWatch(evaluator, stop or (lambda history, zero_signal: None), keep_weights)
    if not is_main_process():  # every launched process trains its share of each batch; the main one measures
        _train_once(cfg, run_dir, resume, log, watch)
        return []
    with claim_run_dir(run_dir, resume, overwrite, kind="finetune"):
        write_json(
            record_path,
            {
                "config": dataclasses.asdict(cfg),
                "seed": cfg.seed,
                "model": model_record(cfg.model),
                "versions": versions(),
            },
        )
        _train_once(cfg, run_dir, resume, log, watch)
        return evaluate_checkpoints(cfg, run_dir, log, shared_base, circuits)


def _train_once(cfg: FinetuneConfig, run_dir: Path, resume: bool, log: Logger, watch: CheckpointWatch | None) -> None:
    """Train unless a resumed run already finished training (``budget.json``, written when it does); all
    processes meet after."""
    wait_for_everyone()
    torch.manual_seed(cfg.seed)
    if not (resume and (run_dir / "budget.json").exists()):
        train(cfg, run_dir, resume, log, watch)
        release_freed_memory()  # the trainer's optimizer state and gradients, before evaluating
    if is_main_process() and not cfg.keep_optimizer:  # the run is complete: nothing will resume it
        drop_resume_state(run_dir)
    wait_for_everyone()
