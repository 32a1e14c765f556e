"""Bad input a new user gives: every case ends with one ``error:`` line, exit status 2, and nothing left
behind, so a plain re-run works once the input is fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GOOD_RECORD, assert_refused, jsonl, records, run_cli


def forgetlens(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env=env)  # in-process: the error paths need no interpreter of their own


def model_dir(path: Path, model_type: str) -> Path:
    """A directory with only a config.json of ``model_type`` (what a user might point --model at)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return path


def finetune(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return forgetlens("finetune", "--method", "sft", "--steps", "2", "--out", str(tmp_path / "run"), *args)


@pytest.mark.parametrize(
    "make_args, needles",
    [
        # 1. records too long: a huge field fails before tokenizing; a prompt beyond the model's positions too
        (
            lambda d: ["--data", str(jsonl(d / "big.jsonl", *records(3), {**GOOD_RECORD, "question": "x" * 50_000}))],
            ["big.jsonl:4", "'question' is 50,000 characters"],
        ),
        (
            lambda d: [
                "--data",
                str(jsonl(d / "long.jsonl", *[{**r, "question": r["question"] + " why" * 300} for r in records(3)])),
            ],
            ["long.jsonl:", "the prompt is", "the model covers 128 positions"],
        ),
        # 3. not UTF-8
        (
            lambda d: ["--data", str(_write(d / "latin.jsonl", b'{"question": "caf\xe9"}\n'))],
            ["latin.jsonl:1", "UTF-8"],
        ),
        # 4. bad model, loss type, learning rate: refused before the run directory exists
        (lambda d: ["--model", str(d / "missing")], ["model path", "does not exist"]),
        (lambda d: ["--model", str(_mkdir(d / "empty"))], ["has no config.json"]),
        (lambda d: ["--model", str(model_dir(d / "t5", "t5"))], ["unsupported architecture 't5'"]),
        (lambda d: ["--model", str(model_dir(d / "bert", "bert"))], ["unsupported architecture 'bert'"]),
        (lambda d: ["--model", "Qwen/Qwen2.5-0.5B-Instruct"], ["not a local directory and not in the local"]),
        (lambda d: ["--model", "models/nope"], ["not a local directory and not in the local"]),
        (lambda d: ["--loss-type", "ppo"], ["--loss-type: unknown loss type 'ppo'"]),
        (lambda d: ["--lr", "-0.1"], ["lr_sft: expected a positive number, got -0.1"]),
        # 5. and 8. ranges
        (lambda d: ["--lr", "0"], ["lr_sft: expected a positive number, got 0.0"]),
        (lambda d: ["--max-records", "-5"], ["max_records: expected a positive integer, got -5"]),
        (lambda d: ["--max-records", "0"], ["max_records: expected a positive integer, got 0"]),
        # 8. a 3-option record typed mcq-4-choices
        (
            lambda d: [
                "--data",
                str(
                    jsonl(
                        d / "three.jsonl", {**GOOD_RECORD, "choices": {"text": ["a", "b", "c"], "label": list("ABC")}}
                    )
                ),
            ],
            ["three.jsonl:1", "needs 4 choices, got 3"],
        ),
        (lambda d: ["--resume", "--overwrite"], ["--resume and --overwrite"]),
        # 10. a dataset too small names its file
        (lambda d: ["--data", str(jsonl(d / "one.jsonl", *records(1)))], ["one.jsonl: 1 distinct question"]),
    ],
    ids=lambda v: None if callable(v) else str(v[0])[:30],
)
def test_finetune_refuses_bad_input_before_writing(tmp_path, make_args, needles):
    assert_refused(finetune(tmp_path, *make_args(tmp_path)), *needles)
    assert not (tmp_path / "run").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "config, needles",
    [
        ("", ["the file is empty"]),
        ("seeds: [0\nmethods: [sft]\n", ["bad.yaml:2:", "not valid YAML"]),
        ("model: Qwen/Qwen2.5-0.5B-Instruct\n", ["not a local directory and not in the local"]),
        ("finetune: {max_records: -5}\n", ["finetune.max_records: expected a positive integer, got -5"]),
    ],
)
def test_run_refuses_bad_config_before_writing(tmp_path, config, needles):
    (tmp_path / "bad.yaml").write_text(config)
    result = forgetlens("run", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"))
    assert_refused(result, *needles)
    assert not (tmp_path / "run").exists()


def test_run_refuses_malformed_data_before_any_stage(tmp_path):
    data = jsonl(tmp_path / "bad.jsonl", *records(3), {"type": "mcq-4-choices", "question": "q"})
    (tmp_path / "study.yaml").write_text(f"data: {data}\n")
    result = forgetlens("run", "--config", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "run"))
    assert_refused(result, "bad.jsonl:4", "missing field 'choices.text'")
    assert not (tmp_path / "run").exists()


def test_non_utf8_config_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"model: caf\xe9\n")
    result = forgetlens("run", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"))
    assert_refused(result, "bad.yaml", "not UTF-8")


@pytest.mark.parametrize("command", ["finetune", "run", "audit", "report"])
def test_output_under_a_file_is_one_line(tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "sub" / ("x.json" if command == "audit" else "run")
    args = {
        "finetune": ["finetune", "--method", "sft", "--steps", "2", "--out", str(out)],
        "run": ["run", "--out", str(out)],
        "audit": ["audit", "--base", "embedded", "--tuned", f"sft={tmp_path}", "--out", str(out)],
        "report": ["report", str(out)],
    }[command]
    result = forgetlens(*args)
    assert_refused(result, str(blocker))


def test_resume_with_other_options_names_them(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"config": {"steps": 4, "rl": {"beta": 0.0}}}))
    result = finetune(tmp_path, "--resume")
    assert_refused(result, "--resume with options the run was not started with", "steps: 4 when started, 2 now")


@pytest.mark.slow
def test_a_default_finetune_and_run_make_no_network_lookups(tmp_path):
    """Any host lookup or socket connection fails the run; HF_HUB_OFFLINE is not set by the caller."""
    guard = tmp_path / "guard"
    guard.mkdir()
    attempts = tmp_path / "attempts.log"
    (guard / "sitecustomize.py").write_text(
        f"""import socket
def _record(what):
    with open({str(attempts)!r}, "a") as f:
        f.write(repr(what) + "\\n")
    raise OSError("network use in a test that forbids it")
_connect = socket.socket.connect
def _connect_local_only(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record(address)
    return _connect(self, address)
socket.getaddrinfo = lambda *args, **kwargs: _record(args[:2])
socket.socket.connect = _connect_local_only
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(guard), env.get("PYTHONPATH", "")]), "FORGETLENS_QUIET": "1"})
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "tasks: [ioi]\nn_boot: 20\nfinetune: {steps: 2, checkpoint_every: 2, prompts_per_step: 2, "
        "prior_eval_examples: 8, kl_samples: 1, max_records: 24, rl: {num_generations: 2}}\n"
        "discovery: {n_examples: 8}\n"
    )
    for args in (
        [
            "finetune",
            "--method",
            "rl",
            "--steps",
            "2",
            "--prompts-per-step",
            "2",
            "--num-generations",
            "2",
            "--max-records",
            "24",
            "--out",
            str(tmp_path / "ft"),
        ],
        ["run", "--config", str(study), "--out", str(tmp_path / "study")],
    ):
        result = subprocess.run([sys.executable, "-m", "forgetlens", *args], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
    assert not attempts.exists(), attempts.read_text()


def test_run_refuses_a_worker_count_below_one_before_writing(tmp_path):
    result = forgetlens("run", "--jobs", "0", "--out", str(tmp_path / "run"))
    assert_refused(result, "--jobs must be at least 1, got 0")
    assert not (tmp_path / "run").exists()
