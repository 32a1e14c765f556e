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

from forgetlens.analysis.runs import RunId
from forgetlens.artefacts import read_json, record_field
from forgetlens.config.loading import config_differences, load_frontier_config
from forgetlens.config.methods import finetune_method
from forgetlens.errors import ForgetlensError
from forgetlens.pipeline.frontier import frontier_runs

RECORDS = ("behaviour.json", "behaviour.csv", "budget.json", "config.json", "training_log.json")
"""What a finished run's folder holds besides its weights."""
REQUIRED = ("behaviour.json", "budget.json", "config.json")
"""What a run's folder holds once it is finished."""


def tree(folder: Path) -> list[Path]:
    """``folder`` and everything under it, links not followed."""
    return [folder, *sorted(folder.rglob("*"))]


def copied(run: Path) -> list[Path]:
    """What of a finished run's folder is reused: its records and its cached behaviour rows, not its weights."""
    records = [run / record for record in RECORDS if (run / record).exists() or (run / record).is_symlink()]
    return records + (tree(run / "behaviour") if (run / "behaviour").is_dir() else [])


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
    runs = frontier_runs(cfg)
    names = [name for name in runs if RunId.parse(name).method == args.arm]
    if not names:
        sys.exit(f"--arm: {args.config} has no runs of arm {args.arm!r}")
    shared = [args.source / folder for folder in ("circuits", "base-behaviour") if (args.source / folder).is_dir()]
    sources = [path for name in names for path in copied(args.source / "runs" / name)]
    sources += [path for folder in shared for path in tree(folder)]
    links = [f"{path}: a link; expected the frontier's own files" for path in sources if path.is_symlink()]
    if links:
        sys.exit("\n".join(links))
    problems = []
    for name in names:
        run = args.source / "runs" / name
        missing = [f for f in REQUIRED if not (run / f).exists()]
        if missing:
            problems.append(f"{run}: not finished (no {', '.join(missing)})")
            continue
        try:
            stored = record_field(read_json(run / "config.json"), "config", run / "config.json")
        except ForgetlensError as exc:
            problems.append(str(exc))
            continue
        new = json.loads(json.dumps(dataclasses.asdict(runs[name])))
        problems += [f"{run}: {d}" for d in differences(stored, new, args.arm)]
    if problems:
        sys.exit("\n".join(problems))
    for name in names:
        for path in copied(args.source / "runs" / name):
            target = args.target / "runs" / name / path.relative_to(args.source / "runs" / name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                shutil.copy2(path, target)
    for folder in shared:
        shutil.copytree(folder, args.target / folder.name)
    print(f"{len(names)} runs of {args.arm} reused in {args.target}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ForgetlensError as exc:  # a bad config: its one-line message, no traceback
        sys.exit(str(exc))
