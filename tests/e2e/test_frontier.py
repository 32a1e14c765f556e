"""``forgetlens frontier`` end to end on the embedded model: a planted dominance recovered, resuming, stopping at
a plateau, keeping only the newest weights, and its errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import run_cli

SMALL = {
    "model": "embedded",
    "tasks": ["copying", "ioi"],
    "seeds": [0],
    # replay rehearses the prior tasks' own documents beside the target: planted to keep them, at any accuracy
    "arms": [{"method": "sft", "lrs": [3.0e-3]}, {"method": "replay", "lrs": [3.0e-3]}],
    "max_steps": 32,
    "checkpoint_every": 8,
    "plateau": {"patience": 0},
    "keep_weights": "last",
    "finetune": {
        "synthetic_target": "compare-short",
        "prior_per_prompt": True,
        "prompts_per_step": 8,
        "prior_eval_examples": 32,
        "kl_samples": 1,
        "kl_prompts": 16,
        "max_records": 160,
        "threads": 1,
    },
    "discovery": {"n_examples": 32},
    "analysis": {"levels": [0.6, 0.9], "n_boot": 200},
}


def _config(tmp: Path, **changes) -> Path:
    data = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (data[section] if section else data)[name] = value
    path = tmp / "frontier.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _strict(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path}: bare {constant} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def frontier(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("frontier")
    result = run_cli("frontier", "--config", str(_config(tmp)), "--out", str(tmp / "out"))
    assert result.returncode == 0, result.stderr
    return tmp / "out"


def test_a_planted_dominance_is_recovered(frontier):
    """SFT on the target alone loses IOI as it adapts; replay keeps it: at every matched accuracy replay's
    retention is higher, with an interval above 0, and the verdict says so."""
    results = _strict(frontier / "frontier.json")
    assert results["arms"] == ["sft", "replay"]
    levels = results["comparison"]["levels"]
    assert set(levels) == {"f=0.6", "f=0.9"} and all(results["base"]["accuracy"] < a for a in levels.values())
    for name in levels:
        stat = results["comparison"]["difference"]["replay-sft"][name]["mean"]
        assert stat["ci_low"] > 0, (name, stat)
        ioi = results["paired_tests"]["replay-sft"][name]["ioi"]
        assert ioi["mcnemar_top1"]["only_b"] > ioi["mcnemar_top1"]["only_a"] and ioi["mcnemar_top1"]["p"] < 0.05
    page = (frontier / "frontier.html").read_text()
    assert page.index('id="tradeoff"') < page.index("<h2>Verdicts")  # the trade-off leads
    assert "replay keeps more of its prior skills" in page
    text = re.sub(r'src="data:image/png;base64,[^"]*"', "", page)
    assert not re.search(r"\bnan\b", text.lower())


def test_every_checkpoint_is_measured_and_only_the_newest_weights_stay(frontier):
    for run in ("sft-lr0.003-s0", "replay-lr0.003-s0"):
        rows = sorted((frontier / "runs" / run / "behaviour").glob("checkpoint-*.json"))
        assert sorted(int(p.stem.split("-")[1]) for p in rows) == [0, 8, 16, 24, 32]
        kept = sorted(p.name for p in (frontier / "runs" / run / "checkpoints").iterdir() if not p.name.startswith("."))
        assert kept == ["checkpoint-32"]
        assert not any((frontier / "runs" / run / "checkpoints" / "checkpoint-32").glob("optimizer.pt"))


def test_resume_of_a_finished_frontier_redoes_nothing_and_refuses_other_options(frontier, tmp_path):
    before = _strict(frontier / "frontier.json")
    config = _config(tmp_path)
    again = run_cli("frontier", "--config", str(config), "--resume", "--out", str(frontier))
    assert again.returncode == 0, again.stderr
    after = _strict(frontier / "frontier.json")
    for results in (before, after):
        results.pop("timings")
    assert after == before
    changed = run_cli(
        "frontier", "--config", str(_config(tmp_path, **{"max_steps": 40})), "--resume", "--out", str(frontier)
    )
    assert changed.returncode == 2 and "max_steps: 32 when started, 40 now" in changed.stderr
    asked = run_cli(  # a practitioner's own target and floor, asked of the same runs: no training
        "frontier",
        "--config",
        str(_config(tmp_path)),
        "--resume",
        "--target-accuracy",
        "0.5",
        "--retention-floor",
        "0.8",
        "--out",
        str(frontier),
    )
    assert asked.returncode == 0, asked.stderr
    picks = _strict(frontier / "frontier.json")["picks"]
    assert picks["target_accuracy"] == 0.5 and picks["retention_floor"] == 0.8
    assert picks["cheapest"] and all(p["arm"] == "replay" and p["accuracy"] >= 0.5 for p in picks["cheapest"])
    assert _strict(frontier / "frontier.json")["runs"] == after["runs"]


def test_finished_runs_are_reused_only_where_their_options_are_the_new_configs(frontier, tmp_path):
    """experiments/reuse_frontier_runs.py: an option only RL reads may differ for an SFT arm's runs, which are then
    copied without their weights and count as finished; an option SFT reads may not, and nothing is written."""
    import importlib.util

    from forgetlens.config.loading import load_frontier_config
    from forgetlens.pipeline.frontier import Frontier

    path = Path(__file__).parents[2] / "experiments" / "reuse_frontier_runs.py"
    spec = importlib.util.spec_from_file_location("reuse_frontier_runs", path)
    reuse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reuse)
    config = _config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["finetune"]["rl"] = {"num_generations": 4, "max_completion_length": 8, "oversample": 2}
    config.write_text(yaml.safe_dump(data))
    target = tmp_path / "reused"
    assert reuse.main([str(frontier), str(target), "--config", str(config), "--arm", "sft"]) == 0
    copied = target / "runs" / "sft-lr0.003-s0"
    assert (copied / "behaviour.json").read_bytes() == (
        frontier / "runs" / "sft-lr0.003-s0" / "behaviour.json"
    ).read_bytes()
    assert not (copied / "checkpoints").exists()
    assert Frontier(load_frontier_config(config), target, log=lambda *a: None).finished("sft-lr0.003-s0")

    data["finetune"]["prompts_per_step"] = 4
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit, match="prompts_per_step: 8 when started, 4 now"):
        reuse.main([str(frontier), str(tmp_path / "refused"), "--config", str(config), "--arm", "sft"])
    assert not (tmp_path / "refused").exists()

    linked = tmp_path / "linked"  # a run folder whose record is a link to a file elsewhere: refused, not followed
    shutil.copytree(frontier, linked, symlinks=True, ignore=shutil.ignore_patterns("checkpoints"))
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    (linked / "runs" / "sft-lr0.003-s0" / "training_log.json").unlink()
    (linked / "runs" / "sft-lr0.003-s0" / "training_log.json").symlink_to(elsewhere)
    data["finetune"]["prompts_per_step"] = 8
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit, match="training_log.json: a link; expected the frontier's own files"):
        reuse.main([str(linked), str(tmp_path / "from-links"), "--config", str(config), "--arm", "sft"])
    assert not (tmp_path / "from-links").exists()


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"arms": [{"method": "sft", "lrs": []}]}, "arms[0].lrs: expected at least one learning rate"),
        ({"arms": [{"method": "sft", "lrs": [5.0]}]}, "arms[0].lrs: expected learning rates in (0, 1]"),
        ({"arms": [{"method": "dpo", "lrs": [1e-3]}]}, "arms[0].method: unknown method 'dpo'"),
        ({"finetune.max_new_tokens": 12}, "finetune.rl.max_completion_length: RL's completions (8 tokens)"),
        ({"seeds": [-1]}, "seeds: expected integers in [0, 2^31)"),
        ({"plateau.patience": -1}, "plateau.patience: expected >= 0"),
        ({"plateau.max_zero_signal": 1.5}, "plateau.max_zero_signal: expected a share in [0, 1)"),
    ],
)
def test_bad_options_are_one_line_each_before_anything_is_written(tmp_path, changes, needle):
    result = run_cli("frontier", "--config", str(_config(tmp_path, **changes)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert needle in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_stops_at_its_plateau(tmp_path):
    """With no reachable gain counted as a gain (min_gain 0.99), each run stops once ``patience`` checkpoints pass after
    ``min_steps``; the budget says so and the stopped run's rows end there."""
    config = _config(
        tmp_path,
        **{
            "arms": [{"method": "sft", "lrs": [3.0e-3]}],
            "plateau": {"patience": 1, "min_gain": 0.99, "min_steps": 16},
            "max_steps": 40,
        },
    )
    result = run_cli("frontier", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out" / "runs" / "sft-lr0.003-s0"
    budget = _strict(run / "budget.json")
    assert budget["optimizer_steps"] == 16 and budget["stopped_before_steps"] is True
    assert budget["stop_reason"] == "plateau"
    assert [r["step"] for r in _strict(run / "behaviour.json")["checkpoints"]] == [0, 8, 16]


def test_an_rl_run_stops_when_its_training_reward_saturates(tmp_path):
    """With no share of signal-less groups tolerated (max_zero_signal 0), an RL run whose first 8 steps trained on
    any group without reward variance stops at its first checkpoint, and says why; its budget's per-step shares are
    the ones the rule read."""
    config = _config(
        tmp_path,
        **{
            "arms": [{"method": "rl", "lrs": [1.0e-4]}],
            "plateau": {"patience": 0, "max_zero_signal": 0.0},
            "max_steps": 24,
        },
    )
    data = yaml.safe_load(config.read_text())
    data["finetune"]["rl"] = {"num_generations": 4, "max_completion_length": 8}
    config.write_text(yaml.safe_dump(data))
    result = run_cli("frontier", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    budget = _strict(tmp_path / "out" / "runs" / "rl-lr0.0001-s0" / "budget.json")
    assert sum(budget["frac_reward_zero_std"][:8]) > 0  # the embedded model's groups: many all wrong
    assert budget["optimizer_steps"] == 8 and budget["stop_reason"] == "reward saturated"
    runs = _strict(tmp_path / "out" / "frontier.json")["runs"]
    assert runs["rl-lr0.0001-s0"]["stop_reason"] == "reward saturated"


def test_the_stop_rule_names_its_reason():
    from forgetlens.config.options import PlateauConfig
    from forgetlens.pipeline.finetune import trained_zero_signal
    from forgetlens.pipeline.frontier import stop_reason

    rule = PlateauConfig(patience=2, min_gain=0.02, max_zero_signal=0.5)
    flat = [(0, 0.3), (8, 0.5), (16, 0.5), (24, 0.5)]
    rising = [(0, 0.3), (8, 0.5), (16, 0.6), (24, 0.7)]
    assert stop_reason(flat, [0.0] * 24, rule, window=8) == "plateau"
    assert stop_reason(rising, [0.0] * 16 + [0.75] * 8, rule, window=8) == "reward saturated"
    assert stop_reason(rising, [0.0] * 16 + [0.5] * 8, rule, window=8) is None
    assert stop_reason(rising, [], rule, window=8) is None  # SFT: no groups
    log = [
        {"loss": 1.0, "frac_reward_zero_std": 0.5},
        {"frac_reward_zero_std": 0.75, "frac_trained_zero_std": 0.25},
        {"train_runtime": 3.0},
    ]
    assert trained_zero_signal(log) == [0.5, 0.25]  # what was trained on, where dynamic sampling says


@pytest.mark.slow
def test_a_killed_frontier_resumes_to_the_results_of_an_unbroken_one(tmp_path):
    """SIGKILL while the first run trains (after its first checkpoint is measured), then --resume: frontier.json
    equal to an unbroken run's apart from timings."""
    config = _config(tmp_path, **{"arms": [{"method": "sft", "lrs": [3.0e-3]}, {"method": "rl", "lrs": [1e-4]}]})
    config_rl = tmp_path / "frontier-rl.yaml"
    data = yaml.safe_load(config.read_text())
    data["finetune"]["rl"] = {"num_generations": 4, "max_completion_length": 8}
    config_rl.write_text(yaml.safe_dump(data))
    unbroken = run_cli("frontier", "--config", str(config_rl), "--out", str(tmp_path / "unbroken"))
    assert unbroken.returncode == 0, unbroken.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "FORGETLENS_QUIET": "1"}
    cmd = [sys.executable, "-m", "forgetlens.cli", "frontier", "--config", str(config_rl), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    first_row = out / "runs" / "rl-lr0.0001-s0" / "behaviour" / "checkpoint-8.json"
    deadline = time.time() + 300
    while not first_row.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_row.exists()
    assert not (out / "frontier.json").exists()
    resumed = run_cli("frontier", "--config", str(config_rl), "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    a, b = _strict(tmp_path / "unbroken" / "frontier.json"), _strict(out / "frontier.json")
    for results in (a, b):
        results.pop("timings")
        for run in results["runs"].values():
            for key in ("training_seconds", "resumed", "training_seconds_estimated"):
                run.pop(key)
        for config in results["configs"]:
            config.pop("seconds")
        results.pop("picks")
        for by_level in results["speed"].values():
            for first in by_level.values():
                if first is not None:
                    first.pop("seconds")
    assert a == b


def test_an_arm_with_lora_is_its_own_arm():
    """The same method with and without LoRA: two arms (``sft``, ``sft-lora8``), each run at its own rank and its
    own rate, named for its arm."""
    from forgetlens.config.options import FrontierArm, FrontierConfig
    from forgetlens.pipeline.frontier import frontier_runs

    cfg = FrontierConfig(arms=[FrontierArm("sft", [1e-3]), FrontierArm("sft", [3e-3], lora_rank=8)], seeds=[0, 1])
    runs = frontier_runs(cfg)
    assert sorted(runs) == ["sft-lora8-lr0.003-s0", "sft-lora8-lr0.003-s1", "sft-lr0.001-s0", "sft-lr0.001-s1"]
    assert runs["sft-lora8-lr0.003-s1"].lora_rank == 8 and runs["sft-lr0.001-s0"].lora_rank == 0
    assert runs["sft-lora8-lr0.003-s1"].lr_sft == 3e-3 and runs["sft-lora8-lr0.003-s1"].seed == 1
    from forgetlens.config.options import deferred_validation

    with deferred_validation():
        twice = FrontierConfig(arms=[FrontierArm("sft"), FrontierArm("sft")])
    assert "arms: repeated arms in ['sft', 'sft']; each arm is one method (with or without LoRA)" in twice.problems()


def test_report_rebuilds_the_page_and_prints_its_tables(frontier, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(frontier / "frontier.json", copy / "frontier.json")
    result = run_cli("report", str(copy))
    assert result.returncode == 0, result.stderr
    assert (copy / "frontier.html").read_text() == (frontier / "frontier.html").read_text()
    markdown = run_cli("report", str(copy), "--markdown")
    assert markdown.returncode == 0 and "### matched" in markdown.stdout and "| replay - sft |" in markdown.stdout
    (copy / "frontier.json").write_text('{"schema": "forgetlens-frontier/1", "arms": 3}')
    broken = run_cli("report", str(copy))
    assert broken.returncode == 2 and "frontier.json: its fields do not fit together" in broken.stderr


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_the_command_that_continues(tmp_path):
    """SIGINT to the whole process group (as Ctrl-C sends it) while a run trains: exit 130, one line naming what is
    kept and the exact command to continue; that command finishes the frontier."""
    import shlex

    config = _config(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "FORGETLENS_QUIET": "1"}
    cmd = [sys.executable, "-m", "forgetlens", "frontier", "--config", str(config), "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    first_row = out / "runs" / "sft-lr0.003-s0" / "behaviour" / "checkpoint-8.json"
    deadline = time.time() + 300
    while not first_row.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: the work finished so far is kept in {out}; continue it with: forgetlens ")
    again = shlex.split(last.split("continue it with: ", 1)[1])
    assert again[-1] == "--resume"
    resumed = run_cli(*again[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "frontier.json").exists()


def test_a_resumed_runs_time_is_its_arms_rate_times_its_steps():
    """A resumed run's budget timed its last session only: its seconds become the median seconds per step of its
    arm's runs trained in one session; an arm with none keeps what was recorded."""
    import numpy as np

    from forgetlens.analysis.frontier import Point
    from forgetlens.pipeline.frontier import _timed_from_whole_runs

    def point(arm, lr, seed, step, seconds):
        return Point(arm, lr, seed, step, target_correct=np.ones(2), prior_correct={}, seconds=seconds)

    def record(arm, lr, seed, seconds, resumed):
        return {
            "arm": arm,
            "lr": lr,
            "seed": seed,
            "steps_trained": 10,
            "training_seconds": seconds,
            "resumed": resumed,
        }

    records = {
        "a": record("sft", 1e-5, 0, 100.0, False),
        "b": record("sft", 1e-4, 0, 300.0, False),
        "c": record("sft", 1e-3, 0, 5.0, True),
        "d": record("rl", 1e-5, 0, 7.0, True),
    }
    points = [point("sft", 1e-3, 0, 5, 2.5), point("sft", 1e-5, 0, 5, 50.0), point("rl", 1e-5, 0, 5, 3.5)]
    timed = _timed_from_whole_runs(points, records)
    assert [p.seconds for p in timed] == [100.0, 50.0, 3.5]  # median 20 s a step x 5 steps; as run; no rate for rl
    assert records["c"]["training_seconds"] == 200.0 and records["c"]["training_seconds_estimated"]
    assert records["d"]["training_seconds"] == 7.0 and not records["d"]["training_seconds_estimated"]
