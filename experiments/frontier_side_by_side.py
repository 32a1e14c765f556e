"""Two frontier results side by side (``frontier.json``, plain or gzipped): the matched levels, the difference of
arms at each with its interval, the least forward KL per arm, the forgetting predictors, adaptation speed, and
RL's reward signal (the share of groups without reward variance, sampled and trained on) with each RL run's steps
and why it stopped.

    python experiments/frontier_side_by_side.py BEFORE AFTER [--names before,after]

Used for the SmolLM2 frontier before and after its RL arm ran with dynamic sampling and the saturation stop
(``docs/results/smollm2-135m/frontier.md``).  Writes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path


def read(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def interval(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("value") is None:
        return "n/a"
    return f"{stat['value']:.{digits}f} [{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}]"


def signal_lines(results: dict) -> list[str]:
    lines = []
    for name, run in results["runs"].items():
        shares = run.get("zero_signal_share") or []
        if not shares:
            continue
        trained = run.get("trained_zero_signal_share") or []
        kept = f", trained on {sum(trained) / len(trained):.3f}" if trained else ""
        why = run.get("stop_reason") or ("plateau" if run.get("stopped_at_plateau") else "budget")
        last = run["checkpoints"][-1]
        lines.append(
            f"  {name}: {run['steps_trained']} steps ({why}); zero-signal sampled {sum(shares) / len(shares):.3f}"
            f"{kept}; last: accuracy {last['target_accuracy']:.3f}, KL {last['kl_forward']:.1f}"
        )
    overall = results.get("rl_signal") or {}
    lines.append(
        "  arm: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in overall.items())
    )
    return lines


def summary(results: dict) -> list[str]:
    c = results["comparison"]
    lines = ["levels: " + ", ".join(f"{k} = {v:.3f}" for k, v in c["levels"].items())]
    for pair, by_level in c["difference"].items():
        for level, tasks in by_level.items():
            cells = ", ".join(f"{t} {interval(s)}" for t, s in tasks.items())
            lines.append(f"  retention {pair} at {level}: {cells}")
    for arm, by_level in c["least_kl"].items():
        lines.append(f"  least KL {arm}: " + ", ".join(f"{k} {interval(v, 1)}" for k, v in by_level.items()))
    for pair, by_level in c["least_kl_difference"].items():
        lines.append(f"  least KL {pair}: " + ", ".join(f"{k} {interval(v, 1)}" for k, v in by_level.items()))
    for group, p in results["predictors"].items():
        lines.append(
            f"  predictors {group}: n {p['n_points']}, R^2 KL {interval(p['r2_kl'], 2)}, partial R^2 circuit "
            f"{interval(p.get('partial_r2_circuit'), 2)}"
        )
    for arm, by_level in results["speed"].items():
        lines.append(
            f"  speed {arm}: "
            + ", ".join(f"{k} step {v['step']} lr {v['lr']:g} {v['seconds']:.0f} s" for k, v in by_level.items() if v)
        )
    return lines + signal_lines(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--names", default="before,after")
    args = parser.parse_args()
    for name, path in zip(args.names.split(","), (args.before, args.after), strict=True):
        print(f"== {name}: {path}")
        for line in summary(read(path)):
            print(line)


if __name__ == "__main__":
    main()
