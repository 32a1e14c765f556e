"""``forgetlens report RUN_DIR --markdown``: a study's tables as Markdown, from results.json alone."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from helpers import run_cli

from forgetlens.report.markdown import comparison_label
from forgetlens.report.text import interval_text, number_text

STORED = Path(__file__).parents[2] / "docs" / "results" / "smollm2-135m" / "quick-results.json.gz"


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
    shown = f"| {name} | {last['step']} | {number_text(last['target_accuracy'])} | {number_text(last['kl_forward'])} |"
    assert shown in text
    task = next(iter(results["tasks"]))
    pair, dcv = next(iter(results["tasks"][task]["dcv"].items()))
    assert f"| {task} | {comparison_label(pair)} | {interval_text(dcv['v_circuit'])} |" in text


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
    lines = audit_lines({"tasks": results["tasks"], "config": {"n_examples": 32, "seed": 0}})
    assert max(len(line) for line in lines) <= WIDTH
    text = "\n".join(lines)
    for task in results["tasks"]:
        assert f"{task}: base circuit C0 of" in text
    assert "sft-s0@12: " in text and "rl-s0@12: " in text  # a verdict per model
    assert "sft-s0@acc:0.5*" in text and "interpolate between the two checkpoints" in text
    assert "DCV rows: positive = SFT damages more" in text
    assert "C0 is found on this audit's own 32 discovery prompts per task" in text  # why a study's C0 can differ
    assert "nan" not in text.lower() and "-0.000 " not in text


def test_paired_tests_on_the_same_prompts_find_a_planted_loss_and_no_other():
    """SFT planted to lose 10 of 32 prompts of each task at its last checkpoint, RL unchanged: McNemar and the
    log p bootstrap see SFT's loss against the base and against RL, and nothing for RL against the base."""
    from forgetlens.analysis.summary import paired_prior_tests
    from forgetlens.report.html import paired_test_table

    results = json.loads(gzip.open(STORED).read())
    for name, run in results["runs"].items():
        for i, row in enumerate(run["checkpoints"]):
            for values in row["prior"].values():
                lost = name.startswith("sft") and i == len(run["checkpoints"]) - 1
                correct = [0.0] * 10 + [1.0] * 22 if lost else [1.0] * 32
                logp = [-3.0 if c == 0 else -0.1 for c in correct]
                values["per_prompt"] = {"correct": correct, "logp_answer": logp}
    tests = paired_prior_tests(results, n_boot=200)
    for task in results["tasks"]:
        sft, rl, pair = tests[task]["sft - base"], tests[task]["rl - base"], tests[task]["rl - sft"]
        assert sft["mcnemar_top1"]["only_a"] == 10 and sft["mcnemar_top1"]["only_b"] == 0
        assert sft["mcnemar_top1"]["p"] < 0.01 and sft["logp_answer"]["ci_high"] < 0
        assert rl["mcnemar_top1"] == {"only_a": 0, "only_b": 0, "p": 1.0} and rl["logp_answer"]["value"] == 0
        assert pair["mcnemar_top1"]["only_b"] == 10 and pair["logp_answer"]["ci_low"] > 0
    results["paired_tests"] = tests
    header, rows = paired_test_table(results)
    assert len(rows) == 3 * len(results["tasks"]) and "10 / 0" in {row[2] for row in rows}
