"""Write the figures a forgetlens page embeds (report.html, frontier.html) as PNG files, for the docs.

    python experiments/report_figures.py runs/frontier/frontier.html docs/results/smollm2-135m/frontier-ratio \
        --ids tradeoff,per_task

Each ``<img id="ID" ... src="data:image/png;base64,...">`` of the page becomes ``PREFIX-ID.png`` (``--ids``: only
those). The page is read as text; nothing in it runs.
"""

from __future__ import annotations

import argparse
import base64
import re
from pathlib import Path

IMAGE = re.compile(r'<img id="([a-z_]+)"[^>]*src="data:image/png;base64,([^"]+)"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("prefix", help="output path prefix; each figure is PREFIX-ID.png")
    parser.add_argument("--ids", default=None, help="comma-separated figure ids (default: all)")
    args = parser.parse_args()
    wanted = set(args.ids.split(",")) if args.ids else None
    for figure, data in IMAGE.findall(args.page.read_text()):
        if wanted is None or figure in wanted:
            out = Path(f"{args.prefix}-{figure}.png")
            out.write_bytes(base64.b64decode(data))
            print(out)


if __name__ == "__main__":
    main()
