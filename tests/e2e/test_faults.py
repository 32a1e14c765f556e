"""Faults by construction: every file of a finished run folder, damaged in turn, then ``forgetlens run --resume``.

One tiny study is built once. The cases are found by walking its folder, so a stage that starts writing a new file
is covered without anyone listing it. For each (file, fault) the folder is copied, the file damaged, the study's
results.json and report removed (so the analysis reads every record back), and the study resumed in-process.
Each case must end in one of two ways: exit 0 with results.json equal to the unbroken study's (apart from
timings), or exit 2 with exactly one ``error:`` line; and in both, nothing outside the folder changed (a sentinel
tree beside it, checksummed) and no planted payload ran. The whole suite runs every case; the fast lane a fixed
sample of them. The report stage reads only the results.json the analysis has just written (a damaged one:
``test_a_damaged_results_json_is_one_line``), so in these cases it writes a placeholder instead of drawing every
figure again: 85 % of a case's time, and nothing a faulted file reaches.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from unittest import mock

import pytest
from helpers import run_cli

from forgetlens.artefacts import MAX_JSON_BYTES

TINY = """model: embedded
tasks: [ioi]
methods: [sft, rl]
seeds: [0]
n_boot: 30
finetune: {steps: 2, prompts_per_step: 2, checkpoint_every: 2, prior_eval_examples: 16, kl_samples: 1, kl_prompts: 4,
           rl: {num_generations: 2}}
discovery: {n_examples: 16, batch_size: 16}
"""
BINARY = (".safetensors", ".npz", ".pt", ".pth", ".bin")
SKIPPED = {".forgetlens.lock", "results.json", "report.html"}
"""Files the resume cases do not fault: the lock holds nothing (its advisory lock is what counts; a link there is
``tests/e2e/test_security.py``'s), and results.json and report.html are removed in every case so that the analysis reads
every record back (``test_a_damaged_results_json_is_one_line`` faults results.json itself)."""


class Payload:
    """Unpickling it creates ``marker``: proof that a planted pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def faults_for(path: Path) -> list[str]:
    """The faults that apply to a file of this kind."""
    common = ["truncate", "empty", "link_out", "directory"]
    if path.suffix == ".json":
        return common + ["wrong_type", "nan", "huge"]
    if path.suffix in BINARY:
        return common + ["pickle"]
    return common


def damage(path: Path, fault: str, outside: Path, marker: Path) -> None:
    """Apply ``fault`` to ``path`` (``outside``: a file beyond the folder a link may point at)."""
    if fault == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif fault == "empty":
        path.write_bytes(b"")
    elif fault == "wrong_type":
        data = json.loads(path.read_text())
        path.write_text(json.dumps({"unexpected": 1} if isinstance(data, list) else [1, 2, 3]))
    elif fault == "nan":  # a number written as NaN: JSON the standard does not allow
        text = path.read_text()
        nan = re.sub(r"(?<=[:\[,])(\s*)-?\d+(\.\d+)?([eE][-+]?\d+)?", r"\1NaN", text, count=1)
        path.write_text(nan if nan != text else "[NaN]")
    elif fault == "huge":  # past the readers' bound, as a sparse file (no disk used)
        os.truncate(path, MAX_JSON_BYTES + 1)
    elif fault == "link_out":
        path.unlink()
        path.symlink_to(outside)
    elif fault == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("x")
    elif fault == "pickle":
        path.write_bytes(pickle.dumps({"payload": Payload(marker)}))
    else:
        raise ValueError(fault)


def checksum(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        digest.update(str(p.relative_to(root)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def comparable(results_path: Path) -> dict:
    data = json.loads(results_path.read_text())
    data.pop("timings")
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("faults")
    (root / "tiny.yaml").write_text(TINY)
    result = run_cli("run", "--config", str(root / "tiny.yaml"), "--out", str(root / "study"))
    assert result.returncode == 0, result.stderr
    files = sorted(
        p.relative_to(root / "study")
        for p in (root / "study").rglob("*")
        if p.is_file() and not p.is_symlink() and p.name not in SKIPPED
    )
    return {"root": root, "files": files, "results": comparable(root / "study" / "results.json")}


def cases(files: list[Path]) -> list[tuple[Path, str]]:
    return [(f, fault) for f in files for fault in faults_for(f)]


FAST_SAMPLE = 12
"""Cases the fast lane runs: an evenly spaced sample of this many, the same every time."""


def _placeholder_report(results: dict, path: Path) -> None:
    """The report stage's writer in the fault cases: given the results.json just written (its sections checked),
    it writes a placeholder page."""
    written = json.loads((path.parent / "results.json").read_text())
    assert set(results) - {"timings"} == set(written) - {"timings"}
    path.write_text("report")


def _run_case(built: dict, tmp_path: Path, relative: Path, fault: str) -> None:
    study = tmp_path / "study"
    shutil.copytree(built["root"] / "study", study, symlinks=True)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("not forgetlens's")
    outside = sentinel / "keep.txt"
    before = checksum(sentinel)
    marker = tmp_path / "payload-ran"
    for derived in ("results.json", "report.html"):
        (study / derived).unlink()
    damage(study / relative, fault, outside, marker)
    with mock.patch("forgetlens.report.html.write_report", _placeholder_report):
        result = run_cli("run", "--config", str(built["root"] / "tiny.yaml"), "--resume", "--out", str(study))
    assert checksum(sentinel) == before, f"{relative} {fault}: something outside the folder changed"
    assert not marker.exists(), f"{relative} {fault}: a planted pickle ran"
    if result.returncode == 0:
        assert comparable(study / "results.json") == built["results"], f"{relative} {fault}: results differ"
    else:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
            f"{relative} {fault}: exit {result.returncode}\n{result.stderr[-2000:]}"
        )
        assert "Traceback" not in result.stderr


def test_every_file_of_a_run_folder_is_found_and_faulted(built):
    """The case list comes from the folder itself: every stage's files are in it."""
    names = {str(f) for f in built["files"]}
    for expected in (
        "study_config.json",
        "circuits/ioi.safetensors",
        "measurements/ioi/base.npz",
        "runs/sft-s0/budget.json",
        "runs/rl-s0/behaviour/checkpoint-2.json",
        "runs/sft-s0/checkpoints/checkpoint-2/model.safetensors",
    ):
        assert expected in names, sorted(names)
    assert len(cases(built["files"])) >= 4 * len(built["files"])  # four faults or more per file


def _sample(all_cases: list, n: int) -> list:
    step = max(1, len(all_cases) // n)
    return all_cases[::step][:n]


@pytest.fixture(scope="module")
def all_cases(built) -> list:
    return cases(built["files"])


def test_a_sample_of_faults_holds(built, all_cases, tmp_path_factory):
    """The fast lane: an evenly spaced sample of the cases."""
    for relative, fault in _sample(all_cases, FAST_SAMPLE):
        _run_case(built, tmp_path_factory.mktemp("case"), relative, fault)


@pytest.mark.slow
def test_every_fault_of_every_file_holds(built, all_cases, tmp_path_factory):
    """The whole suite: every (file, fault) case; the count is printed for the record."""
    print(f"{len(all_cases)} (file, fault) cases over {len(built['files'])} files")
    for relative, fault in all_cases:
        _run_case(built, tmp_path_factory.mktemp("case"), relative, fault)


@pytest.mark.parametrize("fault", ["truncate", "empty", "wrong_type", "link_out", "directory"])
def test_a_damaged_results_json_is_one_line(built, tmp_path, fault):
    """``forgetlens report`` on a study whose results.json is damaged: one error line, nothing outside touched."""
    study = tmp_path / "study"
    shutil.copytree(built["root"] / "study", study, symlinks=True)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("not forgetlens's")
    before = checksum(sentinel)
    damage(study / "results.json", fault, sentinel / "keep.txt", tmp_path / "ran")
    result = run_cli("report", str(study))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert checksum(sentinel) == before


KILLS = {
    # stage: (function to wrap, "module:name"), killed after it ran this many times
    "measure": ("forgetlens.pipeline.study:save_measurements", 2),
    "analyse": ("forgetlens.pipeline.study:write_results", 1),
    "report": ("forgetlens.report.html:render", 1),
}
"""Where a kill lands in each later stage: inside the measurement of the checkpoints (after the first file), as the
analysis writes results.json, and while the report renders."""


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(KILLS))
def test_a_study_killed_in_any_stage_resumes_to_the_unbroken_results(built, tmp_path, stage):
    """SIGKILL in the middle of the measure, analyse or report stage (the process wraps that stage's writer to
    kill itself), then ``run --resume``: results.json equal to the unbroken study's apart from timings, and a
    report. (Kills during training and evaluation: ``tests/e2e/test_finetune.py`` and
    ``tests/e2e/test_frontier.py``.)"""
    import subprocess
    import sys

    target, after = KILLS[stage]
    module, name = target.split(":")
    out = tmp_path / "study"
    if stage == "measure":  # a study whose training is done: the kill lands among the checkpoints' measurements
        shutil.copytree(built["root"] / "study", out, symlinks=True)
        for derived in ("results.json", "report.html"):
            (out / derived).unlink()
        shutil.rmtree(out / "measurements" / "ioi")
        (out / "measurements" / "ioi").mkdir()
        args = ["run", "--config", str(built["root"] / "tiny.yaml"), "--resume", "--out", str(out)]
    else:
        args = ["run", "--config", str(built["root"] / "tiny.yaml"), "--out", str(out)]
    script = (
        "import os, importlib, sys\n"
        f"m = importlib.import_module({module!r})\n"
        f"original, calls = getattr(m, {name!r}), [0]\n"
        "def killed(*a, **k):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] > {after - 1}:\n"
        "        os.kill(os.getpid(), 9)\n"
        "    return original(*a, **k)\n"
        f"setattr(m, {name!r}, killed)\n"
        "from forgetlens.cli import main\n"
        f"main({args!r})\n"
    )
    env = {**os.environ, "FORGETLENS_QUIET": "1"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resume = ["run", "--config", str(built["root"] / "tiny.yaml"), "--resume", "--out", str(out)]
    resumed = run_cli(*resume)
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(out / "results.json") == built["results"]
    assert (out / "report.html").exists()
