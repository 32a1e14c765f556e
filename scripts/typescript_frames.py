"""A terminal session recorded by ``script`` as readable text: the live display's frames every N seconds of its
own clock (the elapsed time it shows), and every line that stayed on screen.

    script -q -c "forgetlens run --jobs 2 --out runs/study" main-job.typescript
    python scripts/typescript_frames.py main-job.typescript [--every 30] > docs/transcripts/main-job-terminal.txt

The live display redraws its rows in place (rich moves the cursor up and clears each row); this keeps the lines
printed above it in order and, between them, a snapshot of the rows at the chosen interval.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

COLOUR = re.compile(r"\x1b\[[0-9;]*m")
CURSOR = re.compile(r"\x1b\[\?25[lh]")
UP_AND_CLEAR = re.compile(r"(?:\x1b\[2K\x1b\[1A)*\x1b\[2K")
ELAPSED = re.compile(r"(\d+):(\d\d) elapsed")


def frames(text: str, every: int) -> list[str]:
    text = CURSOR.sub("", COLOUR.sub("", text)).replace("\r", "")
    text = text.split("\n", 1)[1] if text.startswith("Script started") else text
    text = text.rsplit("\nScript done", 1)[0]
    out, shown = [], -every
    for frame in UP_AND_CLEAR.split(text):
        rows = frame.split("\n")
        live = [r for r in rows if " elapsed" in r and not re.search(r": \d+/\d+ ", r)]  # rows, not finished lines
        done = [r for r in rows if r not in live]
        while done and not done[-1].strip():
            done.pop()
        out += done
        clock = max((int(m.group(1)) * 60 + int(m.group(2)) for r in live for m in [ELAPSED.search(r)] if m), default=0)
        if live and clock >= shown + every:
            out += ["  | " + r for r in live]
            shown = clock
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("typescript", type=Path)
    parser.add_argument("--every", type=int, default=30, help="seconds of the display's clock between snapshots")
    args = parser.parse_args()
    print("\n".join(row.rstrip() for row in frames(args.typescript.read_text(errors="replace"), args.every)))


if __name__ == "__main__":
    main()
