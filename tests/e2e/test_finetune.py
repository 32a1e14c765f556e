"""Fine-tuning runs end to end on the embedded model: checkpoints, behaviour table, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

from forgetlens.config.loading import config_differences
from forgetlens.config.options import FinetuneConfig
from forgetlens.errors import ForgetlensError
from forgetlens.pipeline.evaluate import base_behaviour_key
from forgetlens.pipeline.finetune import finetune
from forgetlens.training.data import target_splits, training_schedule

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sciknoweval-chemistry-L3"


def tiny(method, **kw):
    cfg = FinetuneConfig(
        method=method, steps=4, checkpoint_every=2, prompts_per_step=4, prior_eval_examples=16, kl_samples=1, **kw
    )
    cfg.rl.num_generations = 4
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "rl"])
def test_run_writes_checkpoints_and_behaviour(tmp_path, method):
    rows = finetune(tiny(method), tmp_path / method)
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert rows[0]["kl_forward"] == pytest.approx(0.0, abs=1e-6)
    assert all(r["prior"]["ioi"]["retention_accuracy"] == pytest.approx(1.0) for r in rows[:1])
    table = json.loads((tmp_path / method / "behaviour.json").read_text())
    assert table["method"] == method and len(table["checkpoints"]) == 3
    csv_lines = (tmp_path / method / "behaviour.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("step,target_accuracy,kl_forward")
    budget = json.loads((tmp_path / method / "budget.json").read_text())
    assert budget["optimizer_steps"] == 4 and budget["training_prompts"] == 16
    config = json.loads((tmp_path / method / "config.json").read_text())
    assert config["seed"] == 0 and "torch" in config["versions"]
    assert rows[-1]["kl_forward"] > 0  # the weights moved
    checkpoints = sorted((tmp_path / method / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4"]  # step 0 is the base, not a copy
    assert sorted(p.name for p in (tmp_path / method / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    for c in checkpoints:  # the run is complete: weights kept, the resume state (twice their size) gone
        assert (c / "model.safetensors").exists() and not (c / "optimizer.pt").exists(), c


@pytest.mark.slow
def test_keep_optimizer_keeps_every_checkpoints_resume_state(tmp_path):
    finetune(tiny("sft", keep_optimizer=True), tmp_path / "sft")
    for step in (2, 4):
        assert (tmp_path / "sft" / "checkpoints" / f"checkpoint-{step}" / "optimizer.pt").exists()


@pytest.mark.slow
def test_general_eval_and_a_capped_kl_sample(tmp_path):
    """Off-task drift is measured at every checkpoint: zero KL at the base, a share of cut KL samples."""
    cfg = tiny(
        "sft", general_eval=True, chat_kl_tokens=6, kl_prompts=3, kl_max_new_tokens=4, synthetic_target="compare-short"
    )
    rows = finetune(cfg, tmp_path / "run")
    assert set(rows[0]["general"]) == {"kl_chat", "knowledge_accuracy"}
    assert rows[0]["general"]["kl_chat"] == pytest.approx(0.0, abs=1e-6)
    assert rows[-1]["general"]["kl_chat"] > 0
    assert all(0 <= r["general"]["knowledge_accuracy"] <= 1 and 0 <= r["kl_samples_cut"] <= 1 for r in rows)
    header = (tmp_path / "run" / "behaviour.csv").read_text().splitlines()[0]
    assert header.startswith("step,target_accuracy,kl_forward,kl_chat,knowledge_accuracy,")


@pytest.mark.parametrize("target", ["compare", "compare-short", "facts"])
def test_both_methods_get_the_same_prompts(target):
    sft, rl = tiny("sft", synthetic_target=target), tiny("rl", synthetic_target=target)
    assert training_schedule(target_splits(sft)[0], sft) == training_schedule(target_splits(rl)[0], rl)
    train, evaluation = target_splits(sft)
    assert not {r["question"] for r in train} & {r["question"] for r in evaluation}
    assert {r["details"]["subtask"] for r in train} <= (
        {"compare": {"compare"}, "compare-short": {"compare-short"}}.get(target, {"symbol", "element", "unit"})
    )


def test_the_default_target_asks_only_comparisons_the_embedded_model_never_practised():
    from forgetlens.targets import comparisons

    train, evaluation = target_splits(tiny("sft"))
    asked = sorted(r["question"] for r in train + evaluation)
    assert asked == sorted(r["question"] for r in comparisons.target_records())
    assert len(asked) == len(comparisons.halves()[1])


def test_an_unknown_synthetic_target_is_named(tmp_path):
    with pytest.raises(
        ForgetlensError, match="synthetic_target: unknown target 'stars'; expected one of compare, compare-short, facts"
    ):
        finetune(tiny("sft", synthetic_target="stars"), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the checkout")
def test_shared_sciknoweval_prompts_do_not_fit_the_embedded_model(tmp_path):
    """The chemistry files' prompts (about 170-190 tokens) exceed the embedded model's 128 positions: refused
    before anything is written, naming a record, its length and the limit (a tiny Qwen2 with room trains on
    SciKnowEval records in tests/e2e/test_real_architectures.py)."""
    data = SHARED / "molecule_structure_prediction.jsonl"
    cfg = tiny("sft", data=str(data), max_records=40)
    with pytest.raises(ForgetlensError, match=rf"{data.name}:\d+: the prompt is \d+ tokens.*covers 128 positions"):
        finetune(cfg, tmp_path / "ske")
    assert not (tmp_path / "ske").exists()


def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(ForgetlensError, match="already exists; pass --resume"):
        finetune(tiny("sft"), tmp_path / "run")
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"


def test_bad_method_is_one_line(tmp_path):
    result = run_cli("finetune", "--method", "ppo", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --method: unknown method 'ppo'; expected one of sft, rl, sft-preserve, rl-preserve, replay, rl-replay, "
        "sft-kl"
    )
    assert not (tmp_path / "r").exists()


def _cli(out, *extra):
    return [
        sys.executable,
        "-m",
        "forgetlens",
        "finetune",
        "--method",
        "sft",
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--prompts-per-step",
        "4",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "FORGETLENS_QUIET": "1"}
    straight = subprocess.run(_cli(tmp_path / "a"), capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(_cli(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "b" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "behaviour.json").exists()
    resumed = subprocess.run(_cli(tmp_path / "b", "--resume"), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "a" / "behaviour.json").read_text())["checkpoints"][-1]
    b = json.loads((tmp_path / "b" / "behaviour.json").read_text())["checkpoints"][-1]
    assert a["step"] == b["step"] == 6
    assert a["target_accuracy"] == b["target_accuracy"]
    assert a["kl_forward"] == pytest.approx(b["kl_forward"], rel=1e-5, abs=1e-7)
    for task in a["prior"]:
        assert a["prior"][task]["logit_diff"] == pytest.approx(b["prior"][task]["logit_diff"], rel=1e-5)

    def budget(run):  # everything but this session's figures and where it resumed from (as results.json keeps it)
        data = json.loads((tmp_path / run / "budget.json").read_text())
        return {k: v for k, v in data.items() if "this_session" not in k and k != "resumed_from"}

    assert budget("b") == budget("a")  # TRL's SFT token counter restarts on resume; the budget must not


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "does not exist"),
        ('{"type": "mcq-4-choices"\n', "data.jsonl:1: malformed JSON line"),
        (
            '{"type": "mcq-4-choices", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, '
            '"answerKey": "C"}\n',
            "data.jsonl:1: answerKey 'C' is not among the labels",
        ),
        ("\n", "data.jsonl: the dataset is empty"),
    ],
)
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, content, needle):
    data = tmp_path / "data.jsonl"
    if content is not None:
        data.write_text(content)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "finetune",
            "--method",
            "sft",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_runs_that_evaluate_alike_share_the_base_row(tmp_path, monkeypatch):
    shared = tmp_path / "base-behaviour"
    sft = finetune(tiny("sft"), tmp_path / "sft", shared_base=shared)
    key = base_behaviour_key(tiny("sft"))
    assert sorted(p.name for p in shared.iterdir()) == [key, key.replace(".json", ".kl-samples.json")]

    import forgetlens.pipeline.evaluate as ev

    def no_measuring(*args, **kwargs):
        raise AssertionError("the shared base row was measured again")

    def no_sampling(*args, **kwargs):
        raise AssertionError("the base's KL samples were drawn again")

    monkeypatch.setattr(ev, "generate", no_sampling)  # the second run reads the base's samples from the cache
    monkeypatch.setattr(ev, "target_accuracy", no_measuring)  # step 0 of the second run must come from the cache
    cfg = tiny("rl")
    cfg.steps = cfg.checkpoint_every = 2
    with pytest.raises(AssertionError, match="measured again"):  # step 2 is measured, step 0 is not
        finetune(cfg, tmp_path / "rl", shared_base=shared)
    row = (tmp_path / "rl" / "behaviour" / "checkpoint-0.json").read_text()
    assert row == (tmp_path / "sft" / "behaviour" / "checkpoint-0.json").read_text() and sft[0]["step"] == 0


@pytest.mark.slow
def test_resume_after_deleting_checkpoint_weights_keeps_the_measured_table(tmp_path, monkeypatch):
    """Checkpoint weights deleted to free disk: resuming the finished run reads the cached rows (nothing is
    measured again, no model loaded) instead of writing an empty table; a run with nothing at all is refused."""
    run = tmp_path / "sft"
    rows = finetune(tiny("sft"), run)
    table = (run / "behaviour.csv").read_text()
    for weights in run.glob("checkpoints/checkpoint-*/model.safetensors"):
        weights.unlink()

    import forgetlens.pipeline.evaluate as ev
    import forgetlens.pipeline.finetune as ft

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded to re-measure cached rows")

    monkeypatch.setattr(ft, "load_model", no_loading)
    monkeypatch.setattr(ev, "load_model", no_loading)
    assert finetune(tiny("sft"), run, resume=True) == rows
    assert (run / "behaviour.csv").read_text() == table
    for cached in (run / "behaviour").iterdir():
        cached.unlink()
    with pytest.raises(ForgetlensError, match="no checkpoint weights and no measured behaviour"):
        ev.evaluate_checkpoints(tiny("sft"), run)
    assert (run / "behaviour.csv").read_text() == table


def test_resuming_a_run_recorded_before_an_option_existed():
    """A record without rl.shared_prompt_scoring ran with TRL's scoring: resuming with that is allowed,
    switching to shared-prompt scoring mid-run is named."""
    started = {"steps": 4, "rl": {"beta": 0.0}}
    assert config_differences(started, {"steps": 4, "rl": {"beta": 0.0, "shared_prompt_scoring": False}}) == []
    study_started = {"finetune": started}
    assert config_differences(
        study_started, {"finetune": {"steps": 4, "rl": {"beta": 0.0, "shared_prompt_scoring": True}}}
    ) == ["finetune.rl.shared_prompt_scoring: False when started, True now"]
    assert config_differences(started, {"steps": 4, "rl": {"beta": 0.0, "other": 1}}) == [
        "rl.other: '(absent)' when started, 1 now"
    ]


def test_a_list_of_sections_is_compared_item_by_item():
    """A frontier's arms recorded before ``lora_rank`` existed resume with full fine-tuning; a changed rate or an
    adapter where there was none is named with the arm's index."""
    started = {"arms": [{"method": "sft", "lrs": [1e-5]}, {"method": "rl", "lrs": [3e-6]}]}
    now = {
        "arms": [
            {"method": "sft", "lrs": [1e-5], "lora_rank": None},
            {"method": "rl", "lrs": [3e-6], "lora_rank": None},
        ]
    }
    assert config_differences(started, now) == []
    now["arms"][1]["lora_rank"] = 8
    now["arms"][0]["lrs"] = [2e-5]
    assert config_differences(started, now) == [
        "arms[0].lrs: [1e-05] when started, [2e-05] now",
        "arms[1].lora_rank: None when started, 8 now",
    ]
    assert config_differences(started, {"arms": now["arms"][:1]}) != []
