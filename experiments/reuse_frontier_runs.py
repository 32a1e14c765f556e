"""Start a frontier folder from another frontier's finished runs of one arm, where their options are the new
config's: the SmolLM2 frontier with dynamic sampling (``configs/smollm2-135m-dynamic-sampling-frontier.yaml``)
changes only RL-only options, so its SFT runs are the committed frontier's, trained once.

    python experiments/reuse_frontier_runs.py FROM TO --config NEW.yaml --arm sft

Every run of ``--arm`` in NEW.yaml must be finished in FROM (``behaviour.json`` and ``budget.json``) with a
``config.json`` whose options equal the new run's apart from those its method does not read (``rl.*`` for a method
that does not train with RL); anything else is refused, one line per difference, before anything is written.
Copies those runs' records (not their weights), the base circuits and the cached base rows into TO, a new folder;
then ``forgetlens frontier --config NEW.yaml --out TO --resume`` trains the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from forgetlens.config.loading import config_differences, load_frontier_config
from forgetlens.config.methods import finetune_method
from forgetlens.pipeline.frontier import frontier_runs

RECORDS = ("behaviour.json", "behaviour.csv", "budget.json", "config.json", "training_log.json")
"""What a finished run's folder holds besides its weights."""
REQUIRED = ("behaviour.json", "budget.json", "config.json")
"""What a run's folder holds once it is finished."""


def differences(stored: dict, new: dict, method: str) -> list[str]:
    """The options a run was made with that differ from the new config's, less those ``method`` does not read."""
    reads_rl = finetune_method(method).trainer == "rl"
    return [d for d in config_differences(stored, new) if reads_rl or not d.startswith("rl.")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a finished forgetlens frontier folder")
    parser.add_argument("target", type=Path, help="the new frontier folder (must not exist)")
    parser.add_argument("--config", type=Path, required=True, help="the new frontier's config")
    parser.add_argument("--arm", required=True, help="the arm whose runs are reused, e.g. sft")
    args = parser.parse_args(argv)
    if args.target.exists():
        sys.exit(f"{args.target}: exists; expected a new folder")
    cfg = load_frontier_config(args.config)
    names = [name for name in frontier_runs(cfg) if name.split("-lr")[0] == args.arm]
    if not names:
        sys.exit(f"--arm: {args.config} has no runs of arm {args.arm!r}")
    problems = []
    for name in names:
        run = args.source / "runs" / name
        missing = [f for f in REQUIRED if not (run / f).exists()]
        if missing:
            problems.append(f"{run}: not finished (no {', '.join(missing)})")
            continue
        stored = json.loads((run / "config.json").read_text())["config"]
        new = json.loads(json.dumps(dataclasses.asdict(frontier_runs(cfg)[name])))
        problems += [f"{run}: {d}" for d in differences(stored, new, args.arm)]
    if problems:
        sys.exit("\n".join(problems))
    for name in names:
        (args.target / "runs" / name).mkdir(parents=True)
        for record in RECORDS:
            if (args.source / "runs" / name / record).exists():
                shutil.copy2(args.source / "runs" / name / record, args.target / "runs" / name / record)
        if (args.source / "runs" / name / "behaviour").is_dir():
            shutil.copytree(args.source / "runs" / name / "behaviour", args.target / "runs" / name / "behaviour")
    for shared in ("circuits", "base-behaviour"):
        if (args.source / shared).is_dir():
            shutil.copytree(args.source / shared, args.target / shared)
    print(f"{len(names)} runs of {args.arm} reused in {args.target}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
