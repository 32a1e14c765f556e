"""The fine-tuning numbers in the notes: a learning-rate sweep per method, then several seeds.

    python experiments/finetune_study.py --out /tmp/fl-study [--lrs 1e-4,3e-4,1e-3] [--seeds 0,1,2]

Rule for the learning rate (fixed before looking at forgetting): for each method, the rate with the
highest held-out target accuracy at the final checkpoint of a seed-0 run; ties go to the smaller rate.
Then every method runs at its chosen rate for each seed.  Prints the per-checkpoint table (target
accuracy, forward KL, prior accuracy retention per task) for each method and seed, then per method the
mean over seeds with [min-max] at each checkpoint (the tables in docs/results/).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from forgetlens.config import FinetuneConfig
from forgetlens.training.finetune import finetune


def run(method: str, lr: float, seed: int, out: Path) -> list[dict]:
    cfg = FinetuneConfig(method=method, seed=seed)
    setattr(cfg, "lr_sft" if method == "sft" else "lr_rl", lr)
    run_dir = out / f"{method}-lr{lr:g}-seed{seed}"
    return finetune(cfg, run_dir, resume=run_dir.exists(), log=lambda *a: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    chosen = {}
    for method in ("sft", "rl"):
        finals = {lr: run(method, lr, seeds[0], args.out)[-1]["target_accuracy"] for lr in lrs}
        chosen[method] = max(lrs, key=lambda lr: (finals[lr], -lr))
        print(f"{method} sweep (seed {seeds[0]}, final target accuracy): "
              + ", ".join(f"lr {lr:g}: {acc:.3f}" for lr, acc in finals.items()) + f" -> lr {chosen[method]:g}")
    summary = {}
    for method in ("sft", "rl"):
        for seed in seeds:
            rows = run(method, chosen[method], seed, args.out)
            summary[(method, seed)] = rows
            tasks = list(rows[0]["prior"])
            print(f"\n{method} lr={chosen[method]:g} seed={seed}")
            print("| step | target acc | KL(base||tuned) | " + " | ".join(f"{t} ret." for t in tasks) + " |")
            print("|---" * (3 + len(tasks)) + "|")
            for r in rows:
                print(f"| {r['step']} | {r['target_accuracy']:.3f} | {r['kl_forward']:.4f} | "
                      + " | ".join(f"{r['prior'][t]['retention_accuracy']:.3f}" for t in tasks) + " |")
    for method in ("sft", "rl"):
        runs = [summary[(method, seed)] for seed in seeds]
        tasks = list(runs[0][0]["prior"])
        print(f"\n{method} (lr {chosen[method]:g}), mean over seeds {','.join(map(str, seeds))} [min-max]")
        print("| step | target acc | KL(base‖tuned) | " + " | ".join(f"{t} ret." for t in tasks) + " |")
        print("|---" * (3 + len(tasks)) + "|")
        for i, first in enumerate(runs[0]):
            rows = [run[i] for run in runs]

            def cell(values):
                return f"{statistics.mean(values):.3f} [{min(values):.2f}-{max(values):.2f}]"

            print(f"| {first['step']} | {cell([r['target_accuracy'] for r in rows])} | "
                  f"{cell([r['kl_forward'] for r in rows])} | "
                  + " | ".join(cell([r["prior"][t]["retention_accuracy"] for r in rows]) for t in tasks) + " |")
    (args.out / "study_summary.json").write_text(json.dumps(
        {"chosen_lr": chosen, "runs": {f"{m}-{s}": rows for (m, s), rows in summary.items()}}, indent=1))


if __name__ == "__main__":
    main()
