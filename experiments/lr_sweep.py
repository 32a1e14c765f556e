"""The learning-rate rule behind the study's defaults: a small sweep per method on a seed the study never uses.

    python experiments/lr_sweep.py --out /tmp/fl-sweep [--config STUDY.yaml] [--lrs 1e-4,3e-4,1e-3,3e-3]
                                   [--sft-lrs ...] [--rl-lrs ...] [--seed 100] [--jobs 2]

``--config`` takes every run's options (model, target, budget, evaluation) from a study config's ``finetune``
section, so the rates are chosen at the budget the study runs; without it, the embedded default.

Rule (fixed before looking at forgetting or circuits): for each method, the rate with the highest held-out
target accuracy at the final checkpoint of a run with ``--seed`` (default 100; its train/eval split and data
order differ from the study's seeds 0, 1, 2); ties go to the smaller rate.  Prints each run's final target
accuracy, forward KL and mean prior-task retention, and the chosen rate per method.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from forgetlens.config.loading import load_study_config
from forgetlens.config.options import FinetuneConfig
from forgetlens.pipeline.finetune import finetune


def base_config(study_config: Path | None) -> FinetuneConfig:
    """The fine-tuning options every sweep run shares."""
    if study_config is None:
        return FinetuneConfig()
    study = load_study_config(study_config)
    return dataclasses.replace(study.finetune, model=study.model, data=study.data, prior_tasks=study.tasks)


def run(method: str, lr: float, seed: int, out: Path, study_config: Path | None = None) -> dict:
    cfg = dataclasses.replace(base_config(study_config), method=method, seed=seed)
    cfg.checkpoint_every = cfg.steps  # the rule reads the final checkpoint only
    setattr(cfg, "lr_sft" if method == "sft" else "lr_rl", lr)
    run_dir = out / f"{method}-lr{lr:g}-seed{seed}"
    rows = finetune(cfg, run_dir, resume=run_dir.exists(), log=lambda *a: None)
    last = rows[-1]
    retention = sum(v["retention_accuracy"] for v in last["prior"].values()) / len(last["prior"])
    return {
        "method": method,
        "lr": lr,
        "base": rows[0]["target_accuracy"],
        "final": last["target_accuracy"],
        "best": max(r["target_accuracy"] for r in rows),
        "kl": last["kl_forward"],
        "retention": retention,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3,3e-3", help="rates tried for both methods")
    parser.add_argument("--sft-lrs", default=None, help="rates tried for SFT (default: --lrs)")
    parser.add_argument("--rl-lrs", default=None, help="rates tried for RL (default: --lrs)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--config", type=Path, default=None, help="a study config whose finetune section to use")
    args = parser.parse_args()
    grid = {m: [float(x) for x in (getattr(args, f"{m}_lrs") or args.lrs).split(",")] for m in ("sft", "rl")}
    jobs = [(m, lr) for m in ("rl", "sft") for lr in grid[m]]  # the slow RL runs first
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(
            pool.map(run, *zip(*jobs), [args.seed] * len(jobs), [args.out] * len(jobs), [args.config] * len(jobs))
        )
    print("| method | lr | target acc (base -> final) | best | KL final | mean prior retention |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['method']} | {r['lr']:g} | {r['base']:.3f} -> {r['final']:.3f} | {r['best']:.3f} | "
            f"{r['kl']:.3f} | {r['retention']:.3f} |"
        )
    for method in ("sft", "rl"):
        mine = [r for r in results if r["method"] == method]
        chosen = max(mine, key=lambda r: (r["final"], -r["lr"]))
        print(f"{method}: chosen lr {chosen['lr']:g} (final target accuracy {chosen['final']:.3f})")


if __name__ == "__main__":
    main()
