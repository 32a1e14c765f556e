"""Overhead of ``CircuitMonitor`` as a fraction of training time, on the default fine-tuning runs.

    python bench/monitor.py [--methods sft,rl] [--every 50] [--steps 120]

For each method, trains the default run (embedded model, 8 prompts a step) twice in one process: without the
monitor and with it measuring all four prior tasks (32 prompts each) every ``--every`` steps.  Prints the
training time of both, the time spent inside the monitor's measurements, and their ratio to the unmonitored
training time; the one-off setup (finding the base circuits, the base model's gradients) is shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="sft,rl")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    os.environ["FORGETLENS_QUIET"] = "1"
    from forgetlens.config.options import FinetuneConfig, MonitorConfig
    from forgetlens.pipeline.finetune import train

    print(
        f"{'method':<7}{'steps':>6}{'train s':>9}{'monitored s':>13}{'in monitor s':>14}{'overhead':>10}"
        f"{'measurements':>14}{'setup s':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            times = {}
            for every in (0, args.every):
                cfg = FinetuneConfig(
                    method=method,
                    steps=args.steps,
                    checkpoint_every=args.steps,
                    threads=1,
                    monitor=MonitorConfig(every=every),
                )
                out = Path(tmp) / f"{method}-{every}"
                times[every] = train(cfg, out, resume=False, log=lambda *a: None)["wall_seconds_this_session"]
            mon = json.loads((out / "monitor.json").read_text())
            plain = times[0]
            print(
                f"{method:<7}{args.steps:>6}{plain:>9.1f}{times[args.every]:>13.1f}{mon['seconds']:>14.2f}"
                f"{mon['seconds'] / plain:>10.1%}{len(mon['history']):>14}{mon['setup_seconds']:>9.1f}"
            )
    print(
        "overhead = time inside the monitor's measurements / training time without it (the monitored run's own\n"
        "wall time is shown too; the two trainings differ by noise as well)"
    )


if __name__ == "__main__":
    main()
