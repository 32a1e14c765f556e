"""Wall time and peak memory of the default study (`forgetlens run`), one seed, on this machine.

    python bench/study.py [--seeds 0] [--out /tmp/forgetlens-bench-study]

Runs the README's main job in a child process (a fresh interpreter, as a user would), then prints its wall
time, peak resident memory (the child's ru_maxrss) and each stage's share of the time from timings.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("/tmp/forgetlens-bench-study"))
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forgetlens", "run", "--seeds", args.seeds, "--out", str(args.out)],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20  # KiB on Linux
    timings = json.loads((args.out / "timings.json").read_text())
    print(f"default study, seeds {args.seeds}: wall {wall:.0f} s, peak RSS {peak_gib:.2f} GiB")
    total = sum(timings.values())
    for stage, seconds in timings.items():
        print(f"  {stage:<10}{seconds:>8.1f} s  {seconds / total:>6.1%}")
    print(f"  {'startup':<10}{wall - total:>8.1f} s  (interpreter, imports, config)")


if __name__ == "__main__":
    main()
