"""The findings index is complete: every page under docs/results/ is linked from docs/results/README.md, and every
link there resolves."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).parents[2] / "docs" / "results"


def test_every_results_page_is_in_the_index_and_every_link_resolves():
    index = (RESULTS / "README.md").read_text()
    links = {link for link in re.findall(r"\]\(([^)#\s]+)", index) if not link.startswith("http")}
    pages = {p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*.md")} - {"README.md"}
    assert pages - links == set(), "pages missing from docs/results/README.md"
    assert {link for link in links if not (RESULTS / link).exists()} == set(), "links to nothing"


def test_superseded_pages_live_in_the_archive_listed_as_such():
    """The index's archive section lists exactly the pages under ``archive/``."""
    index = (RESULTS / "README.md").read_text()
    archive = index.partition("## Archive")[2]
    archived = {p.relative_to(RESULTS).as_posix() for p in (RESULTS / "archive").rglob("*.md")}
    assert archived and archived <= set(re.findall(r"\]\((archive/[^)#\s]+\.md)", archive))
    for page in (RESULTS / "archive").rglob("*.md"):  # each says, first thing, that it is not current
        assert page.read_text().split("\n\n")[1].startswith("> Archived:"), page.name


def test_every_relative_link_in_the_docs_resolves():
    root = RESULTS.parents[1]
    pages = [root / "README.md", root / "BENCHMARKS.md", *(root / "docs").rglob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.partition("#")[0]
            if path and not path.startswith(("http:", "https:", "mailto:")) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert broken == []


CODE_PATH = re.compile(r"`([A-Za-z_][\w./-]*\.(?:py|yaml|sh|j2))(?::\s*([\w.]+))?`")
"""A file named in backticks (``analysis/summary.py``, ``configs/x.yaml``), with an optional ``: NAME`` in it."""


def test_every_code_path_named_in_the_docs_exists():
    """Each ``path.py`` (or ``path.py: NAME``) in backticks in the README, BENCHMARKS.md and the current docs names a
    file of the repository (from the root, ``src/``, ``src/forgetlens/``, ``tests/`` or ``configs/``) that holds
    NAME; the archive keeps what its day said."""
    root = RESULTS.parents[1]
    bases = [root, root / "src", root / "src" / "forgetlens", root / "tests", root / "configs"]
    pages = [root / "README.md", root / "BENCHMARKS.md", *(root / "docs").rglob("*.md")]
    stale = []
    for page in (p for p in pages if "archive" not in p.relative_to(root).parts):
        for path, name in CODE_PATH.findall(page.read_text()):
            found = next((base / path for base in bases if (base / path).is_file()), None)
            if found is None or (name and not re.search(rf"\b{re.escape(name.split('.')[-1])}\b", found.read_text())):
                stale.append(f"{page.relative_to(root)}: {path}{': ' + name if name else ''}")
    assert stale == []
    assert CODE_PATH.findall("see `analysis/summary.py: claims` and `x.md`") == [("analysis/summary.py", "claims")]
