"""``scripts/compare_results.py``: the check that a change to the code changed no result of the main job."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("compare_results", ROOT / "scripts" / "compare_results.py")
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)

MAIN_JOB = ROOT / "docs" / "results" / "smollm2-135m" / "quick-results.json.gz"


def test_the_main_job_equals_itself_and_a_planted_change_is_found(tmp_path, capsys):
    results = json.loads(gzip.open(MAIN_JOB).read())
    before = tmp_path / "before.json.gz"
    with gzip.open(before, "wt") as f:
        json.dump(results, f)
    results["timings"] = {"anything": 1.0}  # ignored: wall times differ from run to run
    results["versions"] = {"torch": "other"}
    after = tmp_path / "after.json"
    after.write_text(json.dumps(results))
    assert compare_results.main([str(before), str(after)]) == 0
    assert capsys.readouterr().out.startswith("0 difference(s)")

    checkpoint = results["runs"]["rl-s0"]["checkpoints"][1]
    checkpoint["kl_forward"] *= 1 + 1e-12  # the last bit of one float
    del results["tasks"]["ioi"]["circuit"]["k"]
    after.write_text(json.dumps(results))
    assert compare_results.main([str(before), str(after)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("runs.rl-s0.checkpoints.1.kl_forward: ")
    assert out[1] == "tasks.ioi.circuit.k: only in before"
    assert out[-1].startswith("2 difference(s)")
    assert compare_results.main([str(before), str(after), "--rtol", "1e-9"]) == 1  # k is still missing
