"""A variant of the frontier's RL arm set run by run beside the frontier's own runs (groups of 8): the reward signal
and where RL lands.

    python experiments/rl_against_frontier.py OUT [OUT ...]

Each OUT is a ``forgetlens frontier`` folder of a variant config (``configs/smollm2-135m-rl16-frontier.yaml``:
groups of 16; ``configs/smollm2-135m-rl-dynamic-frontier.yaml``: dynamic sampling), or any part of its rates; its
RL runs are set beside the runs of the same rate and seed in the committed frontier
(``docs/results/smollm2-135m/frontier-results.json.gz``).  Per run: the share of groups without reward variance
over all steps (and, with dynamic sampling, of the groups trained on), its never-rewarded bound, training seconds
per step, and at every checkpoint the held-out target accuracy, forward KL on the target and mean prior-task top-1
accuracy.  Writes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

FRONTIER = Path(__file__).parents[1] / "docs" / "results" / "smollm2-135m" / "frontier-results.json.gz"


def summary(run: dict) -> str:
    """One run's reward signal and cost in a line."""
    shares, trained = run["zero_signal_share"], run.get("trained_zero_signal_share") or []
    signal = run["signal"]
    kept = f", of the groups trained on {sum(trained) / len(trained):.3f}" if trained else ""
    return (
        f"zero-signal share {sum(shares) / len(shares):.3f}{kept} over {len(shares)} steps "
        f"(all wrong <= {signal['all_wrong_at_most']:.3f}, all right >= {signal['all_right_at_least']:.3f}); "
        f"{run['training_seconds'] / run['steps_trained']:.1f} s a training step"
    )


def checkpoints(run: dict) -> list[str]:
    """``step: accuracy / KL / mean prior top-1`` per checkpoint."""
    out = []
    for c in run["checkpoints"]:
        prior = [v["accuracy"] for v in c["prior"].values()]
        out.append(
            f"{c['step']:>3}: {c['target_accuracy']:.3f} / {c['kl_forward']:5.1f} / {sum(prior) / len(prior):.3f}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outs", nargs="+", type=Path, help="frontier folders of a variant RL arm")
    args = parser.parse_args()
    eight = json.loads(gzip.open(FRONTIER).read())["runs"]
    for out in args.outs:
        variant = json.loads((out / "frontier.json").read_text())["runs"]
        for name, run in variant.items():
            if not run["zero_signal_share"]:
                continue  # not an RL run
            print(f"{name}\n  variant:  {summary(run)}")
            base = eight.get(name)
            if base is not None:
                print(f"  frontier: {summary(base)}")
            print("  step: held-out target accuracy / forward KL (nats) / mean prior top-1, variant | frontier")
            rows = checkpoints(base) if base is not None else []
            for i, line in enumerate(checkpoints(run)):
                print(f"  {line} | {rows[i].split(': ', 1)[1] if i < len(rows) else ''}")


if __name__ == "__main__":
    main()
