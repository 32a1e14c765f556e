"""``forgetlens sweep``: the rule that picks every shipped config's learning rates.

For each method (SFT and RL) a short grid of rates is tried, one run each at a seed the study never uses
(:data:`SWEEP_SEED`: its train/evaluation split and data order differ from the study's seeds 0, 1, 2), at the
study's own budget.  The rule, fixed before anything about forgetting or circuits is looked at: the rate with the
highest held-out target accuracy at the final checkpoint; ties go to the smaller rate (:func:`chosen_rates`).
Forward KL and prior retention are printed beside it, and never used to choose.

Writes one ``forgetlens finetune`` run directory per (method, rate) into ``OUT``
(``METHOD-lrLR-seedSEED``); an interrupted sweep resumes each run where it stopped.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forgetlens.analysis.runs import RunId
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import FinetuneConfig, StudyConfig, SweepConfig
from forgetlens.errors import ForgetlensError
from forgetlens.pipeline.finetune import finetune
from forgetlens.progress import open_task

SWEEP_SEED: int = SweepConfig.seed
"""The seed of every sweep run (``SweepConfig.seed``): far from the study's seeds, so the rates are not chosen on
the study's data."""

SweepMethod = Literal["sft", "rl"]


@dataclass(frozen=True)
class SweepRun:
    """The outcome of one sweep run: what the rule reads (``final``) and what it is shown beside."""

    method: SweepMethod
    """The method trained."""
    lr: float
    """Its learning rate."""
    base: float
    """Held-out target accuracy of the base model (step 0)."""
    final: float
    """Held-out target accuracy at the final checkpoint: what the rule compares."""
    best: float
    """The best held-out target accuracy over the run's checkpoints (shown, not used)."""
    kl: float
    """Forward KL(base || tuned) on the target at the final checkpoint."""
    retention: float
    """Mean prior-task accuracy retention at the final checkpoint."""


def sweep_base(study: StudyConfig | None) -> FinetuneConfig:
    """The fine-tuning options every sweep run shares: a study's ``finetune`` section with its model, data and
    prior tasks, or the embedded default."""
    if study is None:
        return FinetuneConfig()
    return dataclasses.replace(study.finetune, model=study.model, data=study.data, prior_tasks=study.tasks)


def sweep_configs(
    base: FinetuneConfig, grid: dict[SweepMethod, list[float]], seed: int = SWEEP_SEED
) -> dict[str, FinetuneConfig]:
    """{run directory name: its config} for every (method, rate) of ``grid``, the slow RL runs first."""
    out = {}
    for method in sorted(grid, key=lambda m: finetune_method(m).trainer != "rl"):
        for lr in grid[method]:
            # the rule reads the final checkpoint only
            cfg = dataclasses.replace(base, method=method, seed=seed, checkpoint_every=base.steps)
            cfg = cfg.with_learning_rate(lr)
            out[str(RunId(method, seed=seed, lr=lr))] = cfg
    return out


def _one_run(cfg: FinetuneConfig, run_dir: Path) -> SweepRun:
    """Train (or resume) one sweep run and read its outcome."""
    rows = finetune(cfg, run_dir, resume=run_dir.exists(), log=lambda *a: None)
    last = rows[-1]
    return SweepRun(
        method=cfg.method,  # type: ignore[arg-type]  # sweep_configs sets sft or rl
        lr=cfg.learning_rate,
        base=rows[0]["target_accuracy"],
        final=last["target_accuracy"],
        best=max(r["target_accuracy"] for r in rows),
        kl=last["kl_forward"],
        retention=sum(v["retention_accuracy"] for v in last["prior"].values()) / len(last["prior"]),
    )


def run_sweep(configs: dict[str, FinetuneConfig], out: Path, jobs: int = 1) -> list[SweepRun]:
    """Every run of ``configs`` in ``jobs`` worker processes; results in the order of ``configs``."""
    if jobs < 1:
        raise ForgetlensError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, SweepRun] = {}
    with (
        ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool,
        open_task("sweep", len(configs), "runs", eta=False) as shown,
    ):
        futures = {pool.submit(_one_run, cfg, out / name): name for name, cfg in configs.items()}
        for future in as_completed(futures):
            results[futures[future]] = future.result()  # re-raises a run's error here
            shown.advance()
    return [results[name] for name in configs]


def chosen_rates(results: list[SweepRun]) -> dict[SweepMethod, SweepRun]:
    """{method: the run the rule picks}: highest final target accuracy, ties to the smaller rate."""
    out: dict[SweepMethod, SweepRun] = {}
    for method in dict.fromkeys(r.method for r in results):
        mine = [r for r in results if r.method == method]
        out[method] = max(mine, key=lambda r: (r.final, -r.lr))
    return out


def sweep_table(results: list[SweepRun]) -> str:
    """The sweep as a Markdown table, then the chosen rate per method."""
    lines = [
        "| method | lr | target acc (base -> final) | best | KL final | mean prior retention |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.method} | {r.lr:g} | {r.base:.3f} -> {r.final:.3f} | {r.best:.3f} | {r.kl:.3f} | {r.retention:.3f} |"
        )
    for method, r in chosen_rates(results).items():
        lines.append(f"{method}: chosen lr {r.lr:g} (final target accuracy {r.final:.3f})")
    return "\n".join(lines)
