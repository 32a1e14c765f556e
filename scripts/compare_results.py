"""Whether two results.json files hold the same numbers, key by key, apart from what is allowed to differ.

    python scripts/compare_results.py BEFORE AFTER [--ignore timings,versions] [--rtol 0]

Either file may be gzipped (``.gz``).  Every key path whose value differs is printed (``runs.rl-s0.checkpoints.1.
kl_forward: 79.66127 != 79.66093``), then one line saying how many; the exit status is 0 when none differ, 1 when
some do.  Keys named in ``--ignore`` are skipped wherever they occur (default: ``timings``, which hold wall
times, and ``versions``); ``--rtol`` lets floats differ by that relative amount (default 0: bit for bit).  Used
to show that a restructuring of the code changed no result: the main job's results.json before and after
(``docs/results/smollm2-135m/quick.md``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def load(path: Path) -> Any:
    """A JSON file, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def differences(a: Any, b: Any, ignore: frozenset[str], rtol: float = 0.0, path: str = "") -> Iterator[str]:
    """``PATH: A != B`` for every leaf where ``a`` and ``b`` differ (a key only one has counts as a difference)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in ignore:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                yield f"{where}: only in {'after' if key not in a else 'before'}"
            else:
                yield from differences(a[key], b[key], ignore, rtol, where)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)}"
            return
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, ignore, rtol, f"{path}.{i}")
    elif isinstance(a, float) and isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
        if not same:
            yield f"{path}: {a!r} != {b!r}"
    elif a != b or type(a) is not type(b):
        yield f"{path}: {a!r} != {b!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore", default="timings,versions", help="keys skipped wherever they occur")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative difference floats may have")
    args = parser.parse_args(argv)
    ignore = frozenset(k for k in args.ignore.split(",") if k)
    found = list(differences(load(args.before), load(args.after), ignore, args.rtol))
    for line in found:
        print(line)
    print(f"{len(found)} difference(s) between {args.before} and {args.after} (ignoring {', '.join(sorted(ignore))})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
