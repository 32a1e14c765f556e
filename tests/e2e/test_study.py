"""`forgetlens run`: config validation, determinism (also across --jobs), resuming after SIGKILL at two stages,
no worker outliving a killed parallel study."""

import html as htmllib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_STUDY as TINY

from forgetlens.pipeline.results import schema_problems


def _run(*args, cwd=None):
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "forgetlens", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _results(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    data.pop("timings")
    return data


@pytest.mark.slow
def test_bad_config_reports_every_problem_before_any_work(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "tasks: [ioi, nope]\nmethods: [sft, dpo]\nbogus: 1\nn_boot: many\n"
        "finetune: {steps: -3, rl: {loss_type: ppo}}\ndiscovery: {ablation: resample, metric: acc}\n"
    )
    result = _run("run", "--config", str(cfg), "--out", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert all(line.startswith("error: ") and str(cfg) in line for line in lines), lines
    text = "\n".join(lines)
    for needle in (
        "bogus: unknown key",
        "n_boot: expected int, got 'many'",
        "unknown task 'nope'",
        "unknown method 'dpo'",
        "finetune.steps: expected a positive integer, got -3",
        "finetune.rl.loss_type: unknown loss type 'ppo'",
        "discovery.ablation: unknown ablation 'resample'",
        "discovery.metric: unknown metric 'acc'",
    ):
        assert needle in text, text
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_existing_run_dir_is_never_overwritten(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    result = _run("run", "--config", str(cfg), "--out", str(run))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (run / "keep.txt").read_text() == "mine"


def _kill_when(proc, path, timeout=600):
    start = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run finished before {path} appeared: {proc.stderr.read()}")
        if time.time() - start > timeout:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_study_is_deterministic_and_resumes_after_sigkill(tiny_study, tmp_path):
    """a: the shared tiny study (``--jobs 1``); b: the same config as one task graph in 2 workers; c: killed twice
    and resumed.  All three equal apart from timings."""
    cfg = tiny_study / "tiny.yaml"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shutil.copytree(tiny_study / "study", a)  # a copy: its report is deleted and redrawn below
    result = _run("run", "--config", str(cfg), "--out", str(b), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert _results(a) == _results(b)
    html = (a / "report.html").read_text()
    for figure in (
        "target_accuracy",
        "prior_retention",
        "drift",
        "tradeoff",
        "heatmaps",
        "dcv_heads",
        "faithfulness_retention",
    ):
        assert f'id="{figure}"' in html
    assert 'id="forgetting_vs_predictors"' not in html  # 4 (task, checkpoint) points: too few for a fit
    text = htmllib.unescape(html)
    assert "4 (task, checkpoint) points are too few for a fit" in text
    assert "Claim 1" in text and "Claim 2 on ioi" in text and "SFT's held-out target gain at step 4" in text
    results = _results(a)
    assert set(results["target_gain"]) == {"sft", "rl"} and results["runs"]["sft-s0"]["n_eval_records"] > 0
    assert schema_problems(json.loads((a / "results.json").read_text())) == []
    assert len(list((a / "base-behaviour").glob("*.kl-samples.json"))) == 1  # SFT and RL of seed 0 share the base
    assert len(list((a / "base-behaviour").iterdir())) == 2  # row and the base's KL samples

    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    cmd = [sys.executable, "-m", "forgetlens", "run", "--config", str(cfg), "--out", str(c)]
    # kill 1: RL training, after its first checkpoint; kill 2: circuit measurement of the checkpoints
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _kill_when(proc, c / "runs" / "rl-s0" / "checkpoints" / "checkpoint-2")
    assert not (c / "runs" / "rl-s0" / "budget.json").exists()
    proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _kill_when(proc, c / "measurements" / "ioi" / "rl-s0@2.npz")
    assert not (c / "results.json").exists()
    result = _run("run", "--config", str(cfg), "--out", str(c), "--resume", "--jobs", "2")  # the task graph resumes too
    assert result.returncode == 0, result.stderr
    assert _results(c) == _results(a)

    (a / "report.html").unlink()
    result = _run("report", str(a))
    assert result.returncode == 0 and 'id="tradeoff"' in (a / "report.html").read_text()


def test_a_partial_section_keeps_the_study_defaults_of_the_rest(tmp_path):
    """`finetune: {kl_coef: 0.2}` changes that key only: checkpoint_every stays StudyConfig's 160, not
    FinetuneConfig's own 120."""
    from forgetlens.config.loading import load_study_config
    from forgetlens.config.options import FinetuneConfig, StudyConfig

    cfg = tmp_path / "partial.yaml"
    cfg.write_text("finetune: {kl_coef: 0.2, preserve: {lam: 3.0}}\ndiscovery: {seed: 4}\n")
    loaded = load_study_config(cfg)
    default = StudyConfig()
    assert loaded.finetune.kl_coef == 0.2 and loaded.finetune.preserve.lam == 3.0
    assert loaded.finetune.checkpoint_every == default.finetune.checkpoint_every == 160
    assert FinetuneConfig().checkpoint_every != 160
    assert loaded.discovery.seed == 4 and loaded.discovery.n_examples == default.discovery.n_examples == 128


@pytest.mark.slow
def test_killing_a_parallel_study_ends_its_workers(tmp_path):
    """SIGKILL of `forgetlens run --jobs 2` must not leave workers writing into the run directory."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "run",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
            "--jobs",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )

    def descendants(pid):
        out = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    out += [int(child)] + descendants(int(child))
        except OSError:
            pass
        return out

    start = time.time()
    started = tmp_path / "run" / "runs" / "rl-s0" / "config.json"  # written by a worker's first job
    while not started.exists() and time.time() - start < 300:
        time.sleep(0.2)
    workers = descendants(proc.pid)
    assert started.exists() and len(workers) >= 3, workers  # resource tracker + 2 workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 20
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if alive(w)]


def test_every_shipped_study_config_is_valid_and_the_default_one_is_the_default():
    from forgetlens.config.loading import load_frontier_config, load_study_config
    from forgetlens.config.options import StudyConfig

    configs = Path(__file__).resolve().parents[2] / "configs"
    frontiers = sorted(configs.glob("*-frontier.yaml"))
    assert frontiers  # forgetlens frontier's configs
    for path in sorted(configs.glob("*.yaml")):  # each raises, naming the key, on any problem
        load_frontier_config(path) if path in frontiers else load_study_config(path, check_paths=False)
    assert load_study_config(configs / "embedded-study.yaml") == StudyConfig()


@pytest.mark.slow
def test_resume_adds_seeds_and_keeps_the_runs_it_has(tiny_study, tmp_path):
    """`--resume --seeds 0,1` on a seed-0 study trains only seed 1's runs, then re-analyses both seeds; dropping
    a seed is refused before any work."""
    cfg = tiny_study / "tiny.yaml"
    run = tmp_path / "run"
    shutil.copytree(tiny_study / "study", run)
    kept = {p: p.stat().st_mtime_ns for p in (run / "runs" / "sft-s0").rglob("*") if p.is_file()}
    kept.update({p: p.stat().st_mtime_ns for p in (run / "measurements").rglob("*.npz")})

    result = _run("run", "--config", str(cfg), "--out", str(run), "--resume", "--seeds", "0,1")
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing of seed 0 retrained or re-measured
    results = _results(run)
    assert results["seeds"] == [0, 1] and {"sft-s1", "rl-s1"} <= set(results["runs"])
    assert json.loads((run / "study_config.json").read_text())["seeds"] == [0, 1]

    result = _run("run", "--config", str(cfg), "--out", str(run), "--resume", "--seeds", "1")
    assert result.returncode != 0 and "may add seeds, not drop them" in result.stderr, result.stderr
    assert _results(run)["seeds"] == [0, 1]


@pytest.mark.slow
def test_a_study_measures_every_checkpoint_with_its_circuits_metric(tmp_path):
    """``discovery.metric: prob_diff``: the base circuit is found with it, and the base and every checkpoint are
    measured with it too (the full model's metric on the evaluation prompts is the probability difference,
    recomputed here, not the logit difference every measure once fell back to)."""
    import numpy as np
    import torch

    from forgetlens.analysis.vulnerability import load_measurements
    from forgetlens.circuits.discover import task_splits
    from forgetlens.circuits.patching import run_metric
    from forgetlens.models.loading import load_model
    from forgetlens.tasks.registry import get_task
    from forgetlens.training.checkpoints import load_checkpoint

    cfg = tmp_path / "prob.yaml"
    text = TINY.replace("discovery: {n_examples: 16}", "discovery: {n_examples: 16, metric: prob_diff}")
    assert "prob_diff" in text
    cfg.write_text(text + "methods: [sft]\n")
    run = tmp_path / "run"
    result = _run("run", "--config", str(cfg), "--out", str(run))
    assert result.returncode == 0, result.stderr
    base = load_model("embedded")
    _, evaluation = task_splits(base.tokenizer, get_task("ioi"), 16, 0)
    with torch.no_grad():
        expected = {"base": run_metric(base.model, evaluation, "prob_diff").double().numpy()}
        ckpt = run / "runs" / "sft-s0" / "checkpoints" / "checkpoint-4"
        expected["sft-s0@4"] = run_metric(load_checkpoint(ckpt, "embedded"), evaluation, "prob_diff").double().numpy()
    for label, values in expected.items():
        stored = load_measurements(run / "measurements" / "ioi" / f"{label}.npz")
        np.testing.assert_allclose(stored.m_full, values, atol=1e-5, err_msg=label)
        assert np.all(np.abs(stored.m_full) <= 1)  # a probability difference
