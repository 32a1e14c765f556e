"""``forgetlens report RUN_DIR --markdown``: a study's tables as Markdown, from results.json alone."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from conftest import run_cli

STORED = Path(__file__).parents[1] / "docs" / "results" / "smollm2-135m" / "quick-results.json.gz"


def test_the_tables_carry_the_numbers_of_results_json_and_nothing_is_written(tmp_path):
    with gzip.open(STORED) as f, open(tmp_path / "results.json", "wb") as out:
        shutil.copyfileobj(f, out)
    results = json.loads((tmp_path / "results.json").read_text())
    result = run_cli("report", str(tmp_path), "--markdown")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    text = result.stdout
    for heading in (
        "### Behaviour at every checkpoint",
        "### DCV(C0) = V_SFT(C0) - V_RL(C0)",
        "### Forgetting predictors",
    ):
        assert heading in text
    name, run = next(iter(results["runs"].items()))
    last = run["checkpoints"][-1]
    assert f"| {name} | {last['step']} | {last['target_accuracy']:.3f} | {last['kl_forward']:.3f} |" in text
    task = next(iter(results["tasks"]))
    pair, dcv = next(iter(results["tasks"][task]["dcv"].items()))
    v = dcv["v_circuit"]
    assert f"| {task} | {pair} | {v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}] |" in text


def test_a_results_file_that_is_not_one_is_one_line(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": "1.6"}))
    result = run_cli("report", str(tmp_path), "--markdown")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "results.json" in result.stderr


def test_a_grid_runs_own_learning_rate_reaches_the_report():
    """A run of the SFT learning-rate grid is shown at its own rate (results.json 1.7 ``runs[RUN].lr``), not at the
    study's SFT rate, which the report once read for every SFT-family run."""
    from forgetlens.report.html import setup_rows

    results = json.loads(gzip.open(STORED).read())
    results["config"]["sft_lr_grid"] = [3e-06]
    grid = json.loads(json.dumps(results["runs"]["sft-s0"]))
    grid.update(method="sft-lr3e-06", lr=3e-06)
    results["runs"]["sft-lr3e-06-s0"] = grid
    results["runs"]["sft-s0"]["lr"] = results["config"]["finetune"]["lr_sft"]
    rows = dict(setup_rows(results))
    assert "learning rate 3e-06," in rows["budget: sft-lr3e-06"]
    assert f"learning rate {results['config']['finetune']['lr_sft']:g}," in rows["budget: sft"]


def test_the_audit_summary_fits_80_columns_and_says_what_each_row_is():
    from forgetlens.report.audit import WIDTH, audit_lines

    results = json.loads(gzip.open(STORED).read())
    lines = audit_lines({"tasks": results["tasks"]})
    assert max(len(line) for line in lines) <= WIDTH
    text = "\n".join(lines)
    for task in results["tasks"]:
        assert f"{task}: base circuit C0 of" in text
    assert "sft-s0@12: " in text and "rl-s0@12: " in text  # a verdict per model
    assert "sft-s0@acc:0.5*" in text and "interpolate between the two checkpoints" in text
    assert "DCV rows: positive = SFT damages more" in text
    assert "nan" not in text.lower() and "-0.000 " not in text
