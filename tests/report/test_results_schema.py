"""results.json's schema (``pipeline/results.py``): the stored study validates, a missing field is named, and
``forgetlens report`` on a file of another shape ends with one ``error:`` line."""

import copy
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgetlens.pipeline.results import SCHEMA_VERSION, schema_problems

STORED = Path(__file__).parents[1] / "data" / "report" / "results.json.gz"


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads(gzip.open(STORED, "rt").read())


def test_the_stored_study_matches_the_schema(stored):
    """The stored file (an earlier minor version: minor versions only add optional fields) still validates."""
    major, minor = map(int, stored["schema_version"].split("."))
    current_major, current_minor = map(int, SCHEMA_VERSION.split("."))
    assert major == current_major and minor <= current_minor
    assert schema_problems(stored) == []


@pytest.mark.parametrize(
    "remove, named",
    [
        (("runs", "sft-s0", "n_eval_records"), "runs/sft-s0: 'n_eval_records' is a required property"),
        (("tasks", "ioi", "circuit"), "tasks/ioi: 'circuit' is a required property"),
        (("layout", "n_heads"), "layout: 'n_heads' is a required property"),
    ],
)
def test_a_missing_field_is_named(stored, remove, named):
    broken = copy.deepcopy(stored)
    *parents, key = remove
    node = broken
    for p in parents:
        node = node[p]
    del node[key]
    assert named in schema_problems(broken)


def test_a_wrong_type_is_named(stored):
    broken = copy.deepcopy(stored)
    broken["runs"]["rl-s0"]["checkpoints"][0]["target_accuracy"] = "high"
    assert any(p.startswith("runs/rl-s0/checkpoints/0/target_accuracy:") for p in schema_problems(broken))


@pytest.mark.parametrize("content", [b"{}", b"[1, 2]", b'{"schema_version": "1.2", "runs": {}}', b"\xff\xfe{"])
def test_report_on_a_file_of_another_shape_is_one_error_line(tmp_path, content):
    (tmp_path / "results.json").write_bytes(content)
    env = {**os.environ, "FORGETLENS_QUIET": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "forgetlens", "report", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "results.json" in lines[0], lines
    assert not (tmp_path / "report.html").exists()
