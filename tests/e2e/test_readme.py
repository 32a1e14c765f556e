"""The README runs as written: its two first commands, every command it shows (options checked against the CLI,
the cheap ones run), its Python example and its audit example, on the embedded model and tiny fine-tuning runs
in place of SmolLM2 and the main job's runs (the only values the tests change)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
ROOT = README.parent


def blocks(language: str) -> list[str]:
    """The text of every fenced block of ``language`` ("" for a plain fence), in order."""
    out, current, inside = [], [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
            else:
                if inside == language:
                    out.append("\n".join(current) + "\n")
                inside = None
        elif inside is not None:
            current.append(line)
    return out


def python_blocks() -> list[str]:
    return blocks("python")


def commands() -> list[list[str]]:
    """Every ``forgetlens ...`` line of the README's code blocks, as tokens (comments dropped), including the
    ones inside ``&&`` chains."""
    out = []
    for block in blocks("bash") + blocks(""):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                if part.startswith("forgetlens "):
                    out.append(part.split())
    return out


@pytest.fixture(scope="module")
def tiny_runs(tiny_study) -> dict[str, Path]:
    """The shared tiny study's SFT and RL runs of the embedded model, standing in for the main job's two runs."""
    return {method: tiny_study / "study" / "runs" / f"{method}-s0" for method in ("sft", "rl")}


def test_the_first_command_installs_only_what_the_main_job_needs_and_runs_it():
    first, tests = blocks("bash")[:2]
    steps = [s.strip() for s in first.strip().split("&&")]
    assert "pip install torch==2.13.0" in steps and "pip install -e ." in steps  # not the test extras
    assert steps.index("pip install torch==2.13.0") < steps.index("pip install -e .")  # torch's CPU wheel first
    assert steps[-1].startswith("forgetlens run ") and "--config" not in steps[-1]  # the main job is the default
    assert 'pip install -e ".[test]"' in tests and tests.strip().endswith("python -m pytest -q -n 2")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python -m pytest -q -n 2" in ci and 'pip install --quiet -e ".[test]"' in ci  # CI runs the same command


def test_every_readme_command_uses_options_the_cli_has():
    from forgetlens.cli import cli

    shown = commands()
    assert {tokens[1] for tokens in shown} >= {"run", "report", "discover", "finetune", "audit", "plan", "tasks"}
    for tokens in shown:
        command = cli.commands.get(tokens[1])
        assert command is not None, tokens
        known = {opt for p in command.params for opt in p.opts} | {"--help", "--quiet", "--debug"}
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(tokens[2:])):
            assert option in known, f"README: `forgetlens {tokens[1]}` has no option {option}"


def test_run_without_a_config_is_the_main_job(tmp_path, monkeypatch):
    import forgetlens.pipeline.study as study
    from forgetlens.cli import cli
    from forgetlens.config.loading import load_study_config

    seen = {}

    def record(cfg, *args, **kwargs):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(study, "run_study", record)
    cli.main(["run", "--out", str(tmp_path / "study")], standalone_mode=False)
    assert seen["cfg"] == load_study_config(ROOT / "configs" / "smollm2-135m-quick.yaml")
    assert seen["cfg"].model == "smollm2-135m" and seen["cfg"].methods == ["sft", "rl"]


@pytest.mark.parametrize("args", [["--help"], ["tasks"], ["run", "--help"], ["audit", "--help"]])
def test_the_commands_that_only_print_run(args):
    result = subprocess.run([sys.executable, "-m", "forgetlens", *args], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    for line in result.stdout.splitlines()[1:]:  # after the usage line (which ends in ARGS...)
        assert not line.rstrip().endswith("..."), line  # no description cut short


@pytest.mark.slow
def test_the_readme_audit_example_runs(tiny_runs, tmp_path):
    (audit,) = [tokens for tokens in commands() if tokens[1] == "audit" and "smollm2-135m" in tokens]
    line = " ".join(audit)
    assert "--tuned sft=runs/study/runs/sft-s0 --tuned rl=runs/study/runs/rl-s0" in line  # the values replaced
    line = line.replace("--base smollm2-135m", "--base embedded").replace("--tasks induction", "--tasks ioi")
    line = line.replace("runs/study/runs/sft-s0", str(tiny_runs["sft"])).replace(
        "runs/study/runs/rl-s0", str(tiny_runs["rl"])
    )
    line = line.replace("--out audit.json", f"--out {tmp_path / 'audit.json'} --n-examples 16 --n-boot 50")
    env = {k: v for k, v in os.environ.items() if k != "FORGETLENS_QUIET"}  # as a user runs it: progress shown
    result = subprocess.run(
        [sys.executable, "-m", "forgetlens", *shlex.split(line)[1:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "audit: 4 tuned model(s) (sft@2, sft@4, rl@2, rl@4)" in result.stderr  # every checkpoint of each run
    assert (tmp_path / "audit.json").exists()
    assert "audit ioi: circuit damage in rl@4: 1/1 model in" in result.stderr  # a line per finished stage
    assert "DCV" in result.stdout  # the sft - rl comparison of the two runs


@pytest.mark.slow
def test_the_readme_python_example_runs(tiny_runs, capsys):
    example = python_blocks()[0]
    line = 'MODEL, RUN = "smollm2-135m", "runs/study/runs/rl-s0"'
    assert line in example  # the two values this test replaces
    exec(compile(example.replace(line, f'MODEL, RUN = "embedded", {str(tiny_runs["rl"])!r}'), str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "rl@2 {'value':" in printed


def test_the_readme_monitor_fragment_is_valid_python():
    compile(python_blocks()[1], str(README), "exec")
