"""The findings index is complete: every page under docs/results/ is linked from docs/results/README.md, and every
link there resolves."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "docs" / "results"


def test_every_results_page_is_in_the_index_and_every_link_resolves():
    index = (RESULTS / "README.md").read_text()
    links = {link for link in re.findall(r"\]\(([^)#\s]+)", index) if not link.startswith("http")}
    pages = {p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*.md") if p.name != "README.md"}
    assert pages - links == set(), "pages missing from docs/results/README.md"
    assert {link for link in links if not (RESULTS / link).exists()} == set(), "links to nothing"
