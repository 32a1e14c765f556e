"""Files from someone else: a run folder, a model folder or a results.json never runs code, never makes forgetlens
delete what it did not make, never injects script into report.html, and a malformed or damaged one is one
``error:`` line (exit 2) naming it, with nothing left half-written."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GOOD_RECORD, assert_refused, jsonl, records
from helpers import run_cli as forgetlens

from forgetlens.artefacts import LOCK_FILE, RUN_MARKER, claim_run_dir
from forgetlens.errors import ForgetlensError

PACKAGE = Path(__file__).parents[2] / "src" / "forgetlens"


class Planted:
    """A pickled object that runs a shell command when unpickled (the attack of a planted .pt file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_pickle(path: Path, marker: Path, extra: dict | None = None) -> Path:
    path.write_bytes(pickle.dumps({**(extra or {}), "payload": Planted(marker)}))
    return path


# --- 1. nothing read from a folder runs code -------------------------------------------------------------------
def test_the_package_never_unpickles_or_trusts_remote_code():
    """No ``weights_only=False``, ``allow_pickle=True`` or ``pickle.load`` anywhere; every ``torch.load`` says
    ``weights_only=True``; every transformers ``from_pretrained`` says ``trust_remote_code=False``."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for bad in ("weights_only=False", "allow_pickle=True", "pickle.load", "trust_remote_code=True"):
            if bad in text:
                problems.append(f"{path.name}: {bad}")
        for call in re.finditer(r"torch\.load\(", text):
            if "weights_only=True" not in _arguments(text, call.end()):
                problems.append(f"{path.name}: torch.load without weights_only=True")
        for call in re.finditer(r"Auto\w+\.from_pretrained\(", text):
            if "trust_remote_code=False" not in _arguments(text, call.end()):
                problems.append(f"{path.name}: {call.group(0)} without trust_remote_code=False")
    assert problems == []


def _arguments(text: str, start: int) -> str:
    """The text of a call's arguments, from just after its ``(`` at ``start`` to the matching ``)``."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    raise AssertionError("unbalanced parentheses")


@pytest.mark.slow
def test_resume_never_unpickles_a_planted_circuit_file(tiny_study, tmp_path):
    """The attack: a pickle with a payload where the base circuit used to be, results.json deleted, then
    --resume.  Circuits are safetensors now, so the .pt file is never read; a planted payload in the
    safetensors file's place is refused with one line."""
    run = tmp_path / "x"
    shutil.copytree(tiny_study / "study", run)
    marker = tmp_path / "PICKLE_EXECUTED"
    planted_pickle(run / "circuits" / "ioi.pt", marker)
    (run / "results.json").unlink()
    result = forgetlens("run", "--config", str(tiny_study / "tiny.yaml"), "--resume", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert _without_timings(run / "results.json") == _without_timings(tiny_study / "study" / "results.json")

    planted_pickle(run / "circuits" / "ioi.safetensors", marker)
    (run / "results.json").unlink()
    result = forgetlens("run", "--config", str(tiny_study / "tiny.yaml"), "--resume", "--out", str(run))
    assert_refused(result, "ioi.safetensors", "not a readable safetensors file")
    assert not marker.exists()


def _without_timings(path: Path) -> dict:
    results = json.loads(path.read_text())
    results.pop("timings")
    return results


def test_pretrain_resume_state_with_a_payload_is_refused(tmp_path):
    from forgetlens.embedded_build.pretrain import _load_state

    marker = tmp_path / "PICKLE_EXECUTED"
    state = planted_pickle(tmp_path / "pretrain_state.pt", marker, {"stage": "copying"})
    with pytest.raises(ForgetlensError, match="not a resume state forgetlens wrote"):
        _load_state(state, "cpu")
    assert not marker.exists()


def _custom_code_model(path: Path, marker: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}, "architectures": ["Evil"]})
    )
    (path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return path


def test_a_model_folder_with_custom_code_is_refused_without_a_prompt(tmp_path):
    marker = tmp_path / "CODE_RAN"
    model = _custom_code_model(tmp_path / "evil-model", marker)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "discover",
            "--task",
            "induction",
            "--model",
            str(model),
            "--out",
            str(tmp_path / "d.json"),
        ],
        input="y\n",
        capture_output=True,
        text=True,
        env={**os.environ, "FORGETLENS_QUIET": "1"},
    )
    assert_refused(result, "names custom code", "auto_map")
    assert "[y/N]" not in result.stdout + result.stderr
    assert not marker.exists() and not (tmp_path / "d.json").exists()


def test_pickle_only_weights_are_refused_before_reading(tmp_path):
    from forgetlens.models.loading import EMBEDDED_DIR, load_weights

    model = tmp_path / "model"
    shutil.copytree(EMBEDDED_DIR, model)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "PICKLE_EXECUTED"
    planted_pickle(model / "pytorch_model.bin", marker)
    with pytest.raises(ForgetlensError, match=r"only pickle weight files \(pytorch_model.bin\)"):
        load_weights(model, model)
    assert not marker.exists()


# --- 2. --overwrite deletes only what forgetlens made ----------------------------------------------------------
def one_step_finetune(out: Path, *extra: str) -> subprocess.CompletedProcess:
    """A one-step SFT run into ``out`` (the embedded model)."""
    args = ["--steps", "1", "--checkpoint-every", "1", "--prompts-per-step", "2", *extra, "--out", str(out)]
    return forgetlens("finetune", "--method", "sft", *args)


@pytest.mark.slow
def test_overwrite_refuses_a_directory_forgetlens_did_not_make(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "important.txt").write_text("precious")
    result = one_step_finetune(victim, "--overwrite")
    assert_refused(result, "was not made by forgetlens")
    assert (victim / "important.txt").read_text() == "precious"


def test_overwrite_refuses_the_current_directory_and_its_parents(tmp_path, monkeypatch):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    for d in (tmp_path / "a", here):
        (d / RUN_MARKER).write_text("{}")
        (d / "keep.txt").write_text("keep")
    monkeypatch.chdir(here)
    for target in (Path("."), Path(".."), here):
        with pytest.raises(ForgetlensError, match="refusing to delete"):
            claim_run_dir(target, resume=False, overwrite=True, kind="finetune")
    assert (here / "keep.txt").exists() and (tmp_path / "a" / "keep.txt").exists()


def test_overwrite_deletes_forgetlens_own_directories_old_and_new(tmp_path):
    new = tmp_path / "new"
    claim_run_dir(new, resume=False, overwrite=False, kind="finetune").release()
    (new / "stale.txt").write_text("x")
    old = tmp_path / "old"  # made before the marker existed: its run record says forgetlens wrote it
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"config": {}, "versions": {"forgetlens": "0.1.0"}}))
    (old / "stale.txt").write_text("x")
    hf_model = tmp_path / "hf"  # a model folder's config.json is not a run record
    hf_model.mkdir()
    (hf_model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for d in (new, old):
        claim_run_dir(d, resume=False, overwrite=True, kind="finetune").release()
        assert not (d / "stale.txt").exists() and (d / RUN_MARKER).exists()
    with pytest.raises(ForgetlensError, match="was not made by forgetlens"):
        claim_run_dir(hf_model, resume=False, overwrite=True, kind="finetune")
    assert (hf_model / "config.json").exists()


def test_a_second_process_is_refused_while_a_run_holds_its_directory(tmp_path):
    run = tmp_path / "run"
    with claim_run_dir(run, resume=False, overwrite=False, kind="study"):
        code = (
            "from forgetlens.artefacts import claim_run_dir\n"
            f"claim_run_dir({str(run)!r}, resume=True, overwrite=False, kind='study')\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode != 0 and "another forgetlens process is working in this run directory" in other.stderr
        with pytest.raises(ForgetlensError, match="another forgetlens process"):
            claim_run_dir(run, resume=False, overwrite=True, kind="study")  # nor may it be deleted meanwhile
    claim_run_dir(run, resume=True, overwrite=False, kind="study").release()  # free again once released
    assert (run / LOCK_FILE).exists()


def test_a_planted_lock_link_creates_nothing_outside_the_run(tmp_path):
    """``.forgetlens.lock`` planted as a link to a path outside: claiming the directory is refused with one line
    and nothing is created where the link points (O_NOFOLLOW)."""
    run, outside = tmp_path / "run", tmp_path / "outside" / "created-by-forgetlens"
    run.mkdir()
    outside.parent.mkdir()
    (run / RUN_MARKER).write_text('{"made_by": "forgetlens", "kind": "finetune"}')
    (run / LOCK_FILE).symlink_to(outside)
    with pytest.raises(ForgetlensError, match="cannot be opened as forgetlens's lock file"):
        claim_run_dir(run, resume=True, overwrite=False, kind="finetune")
    assert not outside.exists()


def test_resume_never_deletes_through_a_planted_checkpoint_link(tmp_path):
    """A finished run whose ``checkpoints/checkpoint-2`` is replaced by a link to a folder outside, holding the
    files a completed run deletes (optimizer, scheduler, RNG state): ``--resume`` leaves that folder untouched,
    and ``checkpoints`` itself as a link is refused."""
    from forgetlens.config.options import FinetuneConfig
    from forgetlens.pipeline.finetune import finetune
    from forgetlens.training.checkpoints import RESUME_STATE, checkpoint_dirs

    cfg = FinetuneConfig(
        method="sft", steps=4, checkpoint_every=2, prompts_per_step=2, prior_eval_examples=8, kl_samples=1
    )
    run = tmp_path / "run"
    finetune(cfg, run, log=lambda *a: None)
    outside = tmp_path / "outside"
    shutil.copytree(run / "checkpoints" / "checkpoint-2", outside)
    for name in RESUME_STATE:
        (outside / name).write_bytes(b"not forgetlens's")
    shutil.rmtree(run / "checkpoints" / "checkpoint-2")
    (run / "checkpoints" / "checkpoint-2").symlink_to(outside, target_is_directory=True)
    assert [s for s, _ in checkpoint_dirs(run)] == [4]  # a link is never a checkpoint
    finetune(cfg, run, resume=True, log=lambda *a: None)
    assert all((outside / name).read_bytes() == b"not forgetlens's" for name in RESUME_STATE)
    checkpoints = run / "checkpoints"
    shutil.move(checkpoints, tmp_path / "elsewhere")
    checkpoints.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ForgetlensError, match="a symbolic link, not forgetlens's checkpoint folder"):
        checkpoint_dirs(run)


# --- 4. every value in report.html escaped -----------------------------------------------------------------------
PAYLOAD = "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"


def poisoned(results: dict) -> dict:
    """``results`` with every free-text string value replaced by :data:`PAYLOAD` (fields the schema restricts
    to a set of values or a version pattern are covered by :func:`test_the_schema_refuses_payloads_in_typed_fields`)."""
    from forgetlens.pipeline.results import VERSION_PATTERN

    def walk(value, key=""):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if re.match(VERSION_PATTERN, value) and key in ("forgetlens", "torch", "python", "platform"):
                return value
            if key in ("methods", "method", "verdict", "dcv_verdict", "forgetting_verdict", "schema_version"):
                return value
            return PAYLOAD
        return value

    out = walk(results)
    out["versions"] = results["versions"]  # matched by a pattern; tried below
    for task, entry in results["tasks"].items():  # the anatomy's metric is one of a set, tried below too
        for label, a in (entry.get("anatomy") or {}).items():
            out["tasks"][task]["anatomy"][label]["metric"] = a["metric"]
    # names used as keys too: a task, so the task name reaches every table and figure title
    text = (
        json.dumps(out)
        .replace('"ioi', '"ioi' + PAYLOAD.replace('"', '\\"'))
        .replace("/ioi", "/ioi" + PAYLOAD.replace('"', '\\"'))
    )
    return json.loads(text)


def report_of(tmp_path: Path, results: dict) -> subprocess.CompletedProcess:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "results.json").write_text(json.dumps(results))
    return forgetlens("report", str(run))


@pytest.fixture(scope="module")
def stored_results() -> dict:
    import gzip

    return json.loads(gzip.open(Path(__file__).parents[1] / "data" / "report" / "results.json.gz", "rt").read())


@pytest.mark.slow
def test_payloads_in_every_string_field_reach_the_page_only_as_text(tmp_path, stored_results):
    result = report_of(tmp_path, poisoned(stored_results))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "path, value",
    [
        (("versions", "forgetlens"), PAYLOAD),
        (("versions", "torch"), PAYLOAD),
        (("config", "methods"), [PAYLOAD]),
        (("config", "finetune", "steps"), PAYLOAD),
        (("config", "finetune", "steps"), "4"),
        (("config", "n_boot"), PAYLOAD),
        (("seeds",), [PAYLOAD]),
        (("config", "model"), 5),
        (("tasks", "ioi", "anatomy", "rl-s0@4", "metric"), PAYLOAD),
    ],
)
def test_the_schema_refuses_payloads_in_typed_fields(tmp_path, stored_results, path, value):
    import copy

    broken = copy.deepcopy(stored_results)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert_refused(report_of(tmp_path, broken), "not a forgetlens results.json", "/".join(path))
    assert not (tmp_path / "run" / "report.html").exists()


def test_fields_that_disagree_are_one_line(tmp_path, stored_results):
    import copy

    broken = copy.deepcopy(stored_results)
    del broken["tasks"]["ioi"]["anatomy"]["rl-s0@4"]["per_prompt"]["correct"]  # every field valid, but one missing
    assert_refused(report_of(tmp_path, broken), "its fields do not fit together", "KeyError")


@pytest.mark.slow
def test_payloads_run_no_script_in_a_browser(tmp_path, stored_results):
    """The poisoned report in headless Chromium: the title stays, the only script is the probe's own."""
    from helpers import chromium, probe_in_chromium

    chromium()  # skips (or fails in CI) before any work where there is no browser
    assert report_of(tmp_path, poisoned(stored_results)).returncode == 0
    page = (tmp_path / "run" / "report.html").read_text()
    check = (
        '<script>window.addEventListener("load", () => { const p = document.createElement("pre"); p.id = "probe";'
        " p.textContent = JSON.stringify({title: document.title, scripts: document.scripts.length,"
        " text: document.body.innerText.includes(\"document.title='PWNED'\")}); document.body.appendChild(p); });"
        "</script>"
    )
    found, _ = probe_in_chromium(page, check, "probe", tmp_path, budget_ms=5000)
    assert found == {"title": "forgetlens report", "scripts": 1, "text": True}


# --- 5. and 6. records and settings checked by type ----------------------------------------------------------
@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"choices": ["a", "b", "c", "d"]}, "field 'choices' should be an object, got list"),
        ({"support": 5}, None),  # SciQ only: below
        ({"prompt": "Answer with the letter."}, "field 'prompt' should be an object, got str"),
        ({"choices": {"text": [1, 2, 3, 4], "label": list("ABCD")}}, "field 'choices.text[0]' should be a non-empty"),
        ({"choices": {"text": ["a", "b", "c", "d"], "label": list("AACD")}}, "field 'choices.label' repeats 'A'"),
        ({"choices": {"text": ["x"] * 4, "label": list("ABCD")}}, "field 'choices.text' repeats 'x'"),
        ({"question": "  "}, "field 'question' is empty"),
        ({"answerKey": 1}, "field 'answerKey' should be a string, got int"),
    ],
)
def test_malformed_records_are_one_line_naming_the_field(tmp_path, bad, needle):
    from forgetlens.targets.science_data import load_target_data

    if needle is None:
        sciq = {"question": "q?", "correct_answer": "a", "distractor1": "b", "distractor2": "c", "distractor3": "d"}
        path = jsonl(tmp_path / "sciq.jsonl", {**sciq, "support": 5})
        with pytest.raises(ForgetlensError, match=r"sciq.jsonl:1: field 'support' should be a string, got int"):
            load_target_data(path)
        return
    path = jsonl(tmp_path / "data.jsonl", *records(11), {**GOOD_RECORD, "question": "The last one?", **bad})
    with pytest.raises(ForgetlensError) as err:
        load_target_data(path)
    assert str(err.value).startswith(f"{path}:12: ") and needle in str(err.value), str(err.value)


def test_a_json_list_holding_a_string_is_one_line(tmp_path):
    from forgetlens.targets.science_data import load_target_data

    (tmp_path / "data.json").write_text(json.dumps([GOOD_RECORD, "not a record"]))
    with pytest.raises(ForgetlensError, match=r"data.json: record 2 should be a JSON object, got str"):
        load_target_data(tmp_path / "data.json")


def test_a_record_that_would_crash_after_training_is_refused_before_it(tmp_path):
    data = jsonl(
        tmp_path / "d.jsonl", *records(11), {**GOOD_RECORD, "choices": {"text": [1, 2, 3, 4], "label": list("ABCD")}}
    )
    result = forgetlens(
        "finetune", "--method", "sft", "--steps", "2", "--data", str(data), "--out", str(tmp_path / "r")
    )
    assert_refused(result, "d.jsonl:12", "choices.text[0]")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "nan"], "lr_sft: expected a finite number, got nan"),
        (["--lr", "inf"], "lr_sft: expected a finite number, got inf"),
        (["--method", "sft-preserve", "--lam", "nan"], "preserve.lam: expected a finite number, got nan"),
    ],
)
def test_nan_settings_are_refused_before_anything_is_written(tmp_path, args, needle):
    result = forgetlens("finetune", "--method", "sft", "--steps", "2", *args, "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "config, needle",
    [
        ("finetune: {kl_coef: .nan}\n", "finetune.kl_coef: expected a finite number, got nan"),
        ("finetune: {accuracy_threshold: 5}\n", "finetune.accuracy_threshold: expected a target accuracy in (0, 1]"),
        ("a: &a [x, x, x]\nmodel: *a\n", "YAML aliases (*name) are not accepted"),
        ("tasks: " + "[" * 20000 + "]" * 20000 + "\n", "nested more than 32 levels deep"),
        ("tasks: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than 32 levels deep"),
        ("model: [" + ", ".join(["long value"] * 5000) + "]\n", "model: expected str, got ['long value'"),
    ],
)
def test_a_config_that_would_exhaust_the_machine_is_one_short_line(tmp_path, config, needle):
    (tmp_path / "bad.yaml").write_text(config)
    result = forgetlens("run", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr[:500]
    assert max(len(line) for line in result.stderr.splitlines()) < 400
    assert not (tmp_path / "run").exists()


def test_a_non_numeric_thread_count_is_one_line():
    assert_refused(forgetlens("tasks", env={"FORGETLENS_THREADS": "abc"}), "FORGETLENS_THREADS='abc'")


# --- 8. damaged or foreign weights, a full disk -------------------------------------------------------------------
@pytest.mark.slow
def test_a_truncated_model_file_names_it(tmp_path):
    from forgetlens.models.loading import EMBEDDED_DIR

    model = tmp_path / "model"
    shutil.copytree(EMBEDDED_DIR, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = forgetlens("discover", "--task", "ioi", "--model", str(model), "--out", str(tmp_path / "d.json"))
    assert_refused(result, str(weights), "truncated or not safetensors")
    assert not (tmp_path / "d.json").exists()


def test_an_adapter_made_on_another_base_is_one_line(tmp_path, tokenizer):
    from helpers import make_tiny
    from peft import LoraConfig, get_peft_model

    from forgetlens.models.loading import load_model
    from forgetlens.training.checkpoints import load_checkpoint

    other = get_peft_model(make_tiny("llama", len(tokenizer)), LoraConfig(r=2, target_modules="all-linear"))
    other.save_pretrained(tmp_path / "adapter")
    assert load_model("embedded").model is not None
    with pytest.raises(ForgetlensError, match=r"does not fit the base model embedded \(made on another base\?\)"):
        load_checkpoint(tmp_path / "adapter", "embedded")


class _FakeTrainer:
    """What :func:`save_checkpoint_staged` uses of a transformers Trainer."""

    def __init__(self, out: Path, step: int):
        from types import SimpleNamespace

        self.args = SimpleNamespace(output_dir=str(out), save_only_model=False)
        self.state = SimpleNamespace(global_step=step, max_steps=step)

    def save(self, fail: bool) -> None:
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        if fail:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "model.safetensors"))
        (folder / "model.safetensors").write_bytes(b"weights")


def test_a_checkpoint_that_fails_to_write_leaves_nothing(tmp_path):
    from forgetlens.training.checkpoints import checkpoint_dirs
    from forgetlens.training.trainers import STAGING_DIR, save_checkpoint_staged

    root = tmp_path / "checkpoints"
    trainer = _FakeTrainer(root, 1)
    with pytest.raises(ForgetlensError, match=r"model.safetensors: no space left on the device .* checkpoint-1"):
        save_checkpoint_staged(trainer, lambda: trainer.save(fail=True))
    assert not (root / "checkpoint-1").exists() and not list((root / STAGING_DIR).iterdir())
    assert trainer.args.output_dir == str(root)
    save_checkpoint_staged(trainer, lambda: trainer.save(fail=False))
    assert [s for s, _ in checkpoint_dirs(tmp_path)] == [1] and (root / "checkpoint-1" / "config.json").exists()


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_half_checkpoint(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "2m"):  # smaller than one checkpoint of the embedded model (2.9 MB of weights)
        pytest.skip("mounting a small tmpfs needs root")
    try:
        result = one_step_finetune(disk / "run")
        assert_refused(result, "no space left on the device")
        for folder in (disk / "run" / "checkpoints").glob("checkpoint-*"):
            assert (folder / "model.safetensors").exists(), f"{folder} is half-written"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- 9. strict JSON, the user's umask -------------------------------------------------------------------------
@pytest.mark.slow
def test_results_json_is_strict_json_and_files_follow_the_umask(tiny_study):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in results.json")

    text = (tiny_study / "study" / "results.json").read_text()
    json.loads(text, parse_constant=refuse)
    assert "null" in text  # the undefined numbers of a one-seed study (intervals over seeds) are there, as null
    for name in ("results.json", "report.html", "study_config.json", "circuits/ioi.safetensors"):
        mode = stat.S_IMODE((tiny_study / "study" / name).stat().st_mode)
        assert mode == 0o666 & ~_umask(), f"{name}: {oct(mode)}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "1e308"], "lr_sft: expected a learning rate in (0, 1], got 1e+308"),
        (["--steps", "99999999999999999999"], "steps: expected at most 1,000,000"),
        (["--seed", "-1"], "seed: expected an integer in [0, 2^32), got -1"),
        (["--seed", "100000000000000000000000"], "seed: expected an integer in [0, 2^32)"),
    ],
)
def test_settings_out_of_range_are_refused_before_anything_is_written(tmp_path, args, needle):
    from helpers import run_cli

    result = run_cli("finetune", "--method", "sft", *args, "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_diverging_run_stops_at_the_step_with_its_last_good_checkpoint(tmp_path, monkeypatch):
    """A loss that turns NaN at step 4: training stops there without saving it, the run exits 2 naming the step
    and the last good checkpoint, and it is not marked complete."""
    from helpers import run_cli

    import forgetlens.training.trainers as trainers

    build = trainers.build_sft_trainer

    def poisoned(*args, **kwargs):
        trainer = build(*args, **kwargs)
        compute = trainer.compute_loss

        def loss(*a, **k):
            out = compute(*a, **k)
            return out * float("nan") if trainer.state.global_step >= 3 else out

        trainer.compute_loss = loss
        return trainer

    monkeypatch.setattr(trainers, "build_sft_trainer", poisoned)
    run = tmp_path / "run"
    result = run_cli(
        "finetune",
        "--method",
        "sft",
        "--steps",
        "8",
        "--checkpoint-every",
        "2",
        "--prompts-per-step",
        "2",
        "--out",
        str(run),
    )
    assert result.returncode == 2, result.stderr
    assert "training diverged at step 4 (loss = nan); kept the last good checkpoint, checkpoint-2" in result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2"
    ]
    assert not (run / "budget.json").exists()


READERS = {
    "artefacts.py": "read_json and load_tensors: the checked readers of JSON and safetensors",
    "analysis/vulnerability.py": "load_measurements: the checked reader of measurement .npz files",
    "targets/science_data.py": "the target data a user points at (its own one-line errors per record)",
    "models/loading.py": "a model folder's JSON files, checked for code before transformers reads them",
    "embedded_build/pretrain.py": "the embedded model's own build state (weights_only)",
    "training/checkpoints.py": "a checkpoint's resume state, read weights_only before the trainer reads it",
}
"""The modules that may parse a file themselves, and why; every other read goes through them."""


def test_no_file_is_parsed_outside_the_checked_readers():
    """``json.loads`` of a file, ``np.load`` and ``torch.load`` appear only in :data:`READERS` (parsing JSON text
    held in memory, such as a round trip of a config or a reward record, is not a file read)."""
    pattern = re.compile(r"json\.loads\((?!json\.dumps|r\))|np\.load\(|torch\.load\(")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in READERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []


def test_a_planted_pickle_in_the_resume_state_is_one_line_and_runs_nothing(tmp_path):
    """``optimizer.pt`` of an unfinished run replaced by a pickle that would run a command: ``--resume`` reads it
    weights-only first, refuses it naming the file, and the command never runs."""
    from helpers import run_cli

    run = tmp_path / "run"
    args = ["finetune", "--method", "sft", "--steps", "4", "--checkpoint-every", "2", "--prompts-per-step", "2"]
    assert run_cli(*args, "--keep-optimizer", "--out", str(run)).returncode == 0
    (run / "budget.json").unlink()  # as if killed after checkpoint-4: the run resumes from it
    marker = tmp_path / "ran"
    planted_pickle(run / "checkpoints" / "checkpoint-4" / "optimizer.pt", marker)
    result = run_cli(*args, "--keep-optimizer", "--resume", "--out", str(run))
    assert result.returncode == 2, result.stderr
    assert "checkpoint-4/optimizer.pt: not the training state forgetlens wrote" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not marker.exists()


def test_checkpoint_weights_follow_the_umask_and_leftovers_go_at_the_next_start(tmp_path):
    """Every file of a checkpoint, its weights too (safetensors writes them 0600), has the mode the umask gives;
    what an interrupted write left (an atomic write's temporary file, a checkpoint's staging folder) is gone once a
    run claims its folder again."""
    from forgetlens.artefacts import claim_run_dir
    from forgetlens.config.options import FinetuneConfig
    from forgetlens.pipeline.finetune import finetune

    run = tmp_path / "run"
    cfg = FinetuneConfig(method="sft", steps=2, checkpoint_every=2, prompts_per_step=2, prior_eval_examples=8)
    finetune(cfg, run, log=lambda *a: None)
    umask = os.umask(0)
    os.umask(umask)
    for path in (run / "checkpoints" / "checkpoint-2").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
    (run / ".behaviour.json.abc123.tmp").write_text("half")
    (run / "checkpoints" / ".partial" / "checkpoint-4").mkdir(parents=True)
    outside = tmp_path / "outside.tmp"
    outside.write_text("not forgetlens's")
    (run / ".linked.tmp").symlink_to(outside)
    claim_run_dir(run, resume=True, overwrite=False, kind="finetune").release()
    assert not (run / ".behaviour.json.abc123.tmp").exists() and not (run / "checkpoints" / ".partial").exists()
    assert outside.read_text() == "not forgetlens's"  # a link is never followed, nor removed as a leftover
