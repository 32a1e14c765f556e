"""Wall time of the default SFT and RL runs and the share RL spends generating.

    python bench/finetune.py [--steps 40] [--seed 0] [--out /tmp/forgetlens-bench-finetune]

Runs `forgetlens finetune` for both methods with the default configuration (embedded model, synthetic
science QA), one after the other in this process, and prints training and evaluation time for each,
plus RL's generation share, from the runs' budget files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from forgetlens.config.options import FinetuneConfig
from forgetlens.pipeline.finetune import finetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/forgetlens-bench-finetune"))
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    rows = []
    for method in ("sft", "rl"):
        cfg = FinetuneConfig(method=method, seed=args.seed)
        if args.steps:
            cfg.steps = args.steps
        start = time.perf_counter()
        finetune(cfg, args.out / method, log=lambda *a: None)
        total = time.perf_counter() - start
        budget = json.loads((args.out / method / "budget.json").read_text())
        rows.append((method, budget, total))
    print(f"{'method':<6}{'steps':>7}{'train s':>10}{'generate s':>12}{'gen share':>11}{'train+eval s':>14}")
    for method, b, total in rows:
        train = b["wall_seconds_this_session"]
        gen = b["generation_seconds_this_session"]
        print(f"{method:<6}{b['optimizer_steps']:>7}{train:>10.1f}{gen:>12.1f}{gen / train:>11.1%}{total:>14.1f}")
    print(
        f"both runs, training only: {sum(r[1]['wall_seconds_this_session'] for r in rows):.1f} s; "
        f"with checkpoint evaluation: {sum(r[2] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
