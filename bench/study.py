"""Wall time and peak memory of a study (`forgetlens run`, by default the README's main job) on this machine.

    python bench/study.py [--config STUDY.yaml] [--seeds 0] [--jobs 2] [--out /tmp/forgetlens-bench-study]

Runs the study in a child process (a fresh interpreter, as a user would), then prints its wall
time, its peak memory (the largest sum of resident memory over the child and its worker processes, sampled
from /proc every 0.2 s), and each stage's share of the time from timings.json (with --jobs > 1 stages 1-3 run as one
task
graph, so their wall time is one line, followed by the worker time each kind of job took).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * resource.getpagesize()
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier += children
    return sum(rss.get(pid, 0) for pid in tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", default="2")
    parser.add_argument("--out", type=Path, default=Path("/tmp/forgetlens-bench-study"))
    parser.add_argument("--config", type=Path, default=None, help="a study config (default: the main job's)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the study in --out (e.g. base circuits found beforehand) instead of starting it "
        "afresh; the time printed is then this session's only",
    )
    args = parser.parse_args()
    if args.out.exists() and not args.resume:
        shutil.rmtree(args.out)
    start = time.perf_counter()
    config = ["--config", str(args.config)] if args.config else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "run",
            *config,
            "--seeds",
            args.seeds,
            "--jobs",
            args.jobs,
            "--out",
            str(args.out),
            *(["--resume"] if args.resume else []),
        ],
        stdout=subprocess.DEVNULL,
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if proc.wait() != 0:
        raise SystemExit(f"forgetlens run failed with exit code {proc.returncode}")
    wall = time.perf_counter() - start
    sampler.join()
    peak_gib = peak[0] / 2**30
    timings = json.loads((args.out / "timings.json").read_text())
    n_seeds = len(args.seeds.split(","))
    print(
        f"{args.config or 'main job'}, seeds {args.seeds}, --jobs {args.jobs}: wall {wall:.0f} s "
        f"({wall / n_seeds:.0f} s per seed), peak memory {peak_gib:.2f} GiB (all processes)"
    )
    stages = {k: v for k, v in timings.items() if not k.endswith("_worker_seconds")}
    total = sum(stages.values())
    for stage, seconds in stages.items():
        print(f"  {stage:<30}{seconds:>8.1f} s  {seconds / total:>6.1%}")
    print(f"  {'startup':<30}{wall - total:>8.1f} s  (interpreter, imports, config)")
    busy = {k: v for k, v in timings.items() if k.endswith("_worker_seconds")}
    if busy:  # --jobs > 1: stages 1-3 overlap; what each kind of job cost its worker, summed over jobs
        print(
            "  worker time by job kind (summed over workers): "
            + ", ".join(f"{k.removesuffix('_worker_seconds')} {v:.0f} s" for k, v in busy.items())
        )


if __name__ == "__main__":
    main()
