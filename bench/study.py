"""Wall time, peak memory and disk of a study (`forgetlens run`, by default the README's main job) on this machine.

    python bench/study.py [--config STUDY.yaml] [--seeds 0] [--jobs 2] [--out DIR] [--log FILE]
                          [--timeline FILE]

Runs the study in a child process (a fresh interpreter, as a user would), then prints its wall time, its peak
memory summed over the child and its worker processes (proportional memory, sampled from /proc once a second,
counts a page that several processes share, such as a library or a memory-mapped weights file, once; resident
memory, sampled every 0.2 s, counts it in each process), its disk use (at the end, and the most while it ran), and
each stage's share of the time from timings.json (with --jobs > 1 stages 1-3 run as one task graph, so their wall
time is one line, followed by the worker time each kind of job took).  ``--log`` keeps the run's output (one line
per finished piece of work); ``--timeline`` each second's memory of every process.
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


def tree_rss(root: int) -> dict[int, int]:
    """{pid: resident bytes} of ``root`` and all its descendants, from /proc."""
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
    return {pid: rss.get(pid, 0) for pid in tree}


def proportional_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (/proc/PID/smaps_rollup): its private resident pages plus, for each
    page it shares with other processes (a library, a memory-mapped weights file), its share of it; summed over
    processes it counts each physical page once, where summed resident memory counts a shared page once per
    process that maps it. 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_bytes(root: Path) -> int:
    """Bytes of every file under ``root`` (0 while it does not exist)."""
    total = 0
    for path in root.rglob("*") if root.exists() else []:
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:  # written or renamed while we looked
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", default="2")
    parser.add_argument("--out", type=Path, default=Path("/tmp/forgetlens-bench-study"))
    parser.add_argument("--config", type=Path, default=None, help="a study config (default: the main job's)")
    parser.add_argument(
        "--log", type=Path, default=None, help="write the run's output here (one line per finished piece of work)"
    )
    parser.add_argument(
        "--timeline",
        type=Path,
        default=None,
        help="write each second's proportional and resident memory of every process here (JSON lines)",
    )
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
    log = open(args.log, "w") if args.log else subprocess.DEVNULL  # noqa: SIM115
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
        stdout=log,
        stderr=subprocess.STDOUT if args.log else None,
    )
    peak, peak_pss, disk, per_process, per_process_pss = [0], [0], [0], {}, {}

    timeline = open(args.timeline, "w") if args.timeline else None  # noqa: SIM115

    def sample() -> None:
        last_pss = 0.0
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            peak[0] = max(peak[0], sum(rss.values()))
            for pid, size in rss.items():
                per_process[pid] = max(per_process.get(pid, 0), size)
            # Proportional memory walks every page table (about 25 ms a GB here): once a second, not every 0.2 s,
            # so the sampler takes about a tenth of a core, not half of one.
            if time.perf_counter() - last_pss >= 1.0:
                last_pss = time.perf_counter()
                pss = {pid: proportional_bytes(pid) for pid in rss}
                peak_pss[0] = max(peak_pss[0], sum(pss.values()))
                for pid, size in pss.items():
                    per_process_pss[pid] = max(per_process_pss.get(pid, 0), size)
                if timeline is not None:
                    row = {"t": round(last_pss - start, 1), "pss": pss, "rss": rss}
                    timeline.write(json.dumps(row) + "\n")
            disk[0] = max(disk[0], tree_bytes(args.out))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if proc.wait() != 0:
        raise SystemExit(f"forgetlens run failed with exit code {proc.returncode}")
    wall = time.perf_counter() - start
    sampler.join()
    if timeline is not None:
        timeline.close()
    peak_gib = peak[0] / 2**30
    timings = json.loads((args.out / "timings.json").read_text())
    n_seeds = len(args.seeds.split(","))
    print(
        f"{args.config or 'main job'}, seeds {args.seeds}, --jobs {args.jobs}: wall {wall:.0f} s "
        f"({wall / n_seeds:.0f} s per seed), peak memory {peak_pss[0] / 2**30:.2f} GiB proportional "
        f"({peak_gib:.2f} GiB resident, counting shared pages once per process), disk "
        f"{tree_bytes(args.out) / 1e9:.2f} GB at the end ({disk[0] / 1e9:.2f} GB at most while running)"
    )
    for name, peaks in (("proportional", per_process_pss), ("resident", per_process)):
        largest = sorted(peaks.values(), reverse=True)[:4]
        print(f"  largest processes' peaks ({name}): " + ", ".join(f"{b / 2**30:.2f} GiB" for b in largest))
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
