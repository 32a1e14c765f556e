"""A run's identity and a model's label (``analysis/runs.py``): written and read back in one place."""

from __future__ import annotations

import pytest

from forgetlens.analysis.runs import (
    ModelLabel,
    RunId,
    checkpoint_label,
    compared_pairs,
    pair_comparison,
    pair_label,
    starts_from,
)
from forgetlens.config.methods import DEFAULT_COMPARISON, Comparison
from forgetlens.config.options import StudyConfig
from forgetlens.errors import ForgetlensError
from forgetlens.pipeline.study import run_configs


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sft-s0", RunId("sft", seed=0)),
        ("rl-preserve-s12", RunId("rl-preserve", seed=12)),
        ("sft-lr1e-05-s2", RunId("sft", seed=2, lr=1e-05)),
        ("sft-lr0.0003-s1", RunId("sft", seed=1, lr=3e-4)),
        ("sft-rl-s0", RunId("rl", seed=0, chain="sft")),
        ("sft", RunId("sft")),
        ("sft-rlhf", RunId("sft-rlhf")),  # not RL from SFT: "rl" must end the chain's part
        ("sft-s01", RunId("sft-s01")),  # would not be written back the same: all method
        ("my model@home", RunId("my model@home")),
        ("-s1", RunId("", seed=1)),  # a DCV pair key's run part
    ],
)
def test_run_names_parse_and_write_back(name, expected):
    assert RunId.parse(name) == expected
    assert str(expected) == name


def test_labels_parse_and_write_back():
    assert ModelLabel.parse("sft-s0@12") == ModelLabel(RunId("sft", seed=0), step=12)
    assert ModelLabel.parse("rl-s2@acc:0.5") == ModelLabel(RunId("rl", seed=2), level="acc:0.5")
    assert ModelLabel.parse("a@b") == ModelLabel(RunId("a@b"))
    for label in ("sft-s0@12", "sft-rl-s3@24", "-s1@kl:0.25", "@40", "", "rl", "sft-lr1e-05-s0@6"):
        assert str(ModelLabel.parse(label)) == label
    assert str(ModelLabel.parse("sft-s3@acc:0.5").without_seed) == "sft@acc:0.5"
    assert checkpoint_label("sft-rl-s0", 24) == "sft-rl-s0@24"


def test_only_declared_comparisons_pair_models():
    """sft:rl pairs sft with rl of the same seed and step, never the RL run that continues SFT (sft-rl) and never
    sft-preserve with rl-preserve unless that comparison is declared; its keys say which comparison they are."""
    labels = ["sft", "rl", "sft-s1@20", "rl-s1@20", "rl-s2@20", "sft-rl-s1@20", "sft-preserve-s0@3", "rl-preserve-s0@3"]
    assert compared_pairs(labels, [DEFAULT_COMPARISON]) == {"": ("sft", "rl"), "-s1@20": ("sft-s1@20", "rl-s1@20")}
    preserve = Comparison.parse("sft-preserve:rl-preserve")
    pairs = compared_pairs(labels, [DEFAULT_COMPARISON, preserve])
    assert pairs["sft-preserve:rl-preserve:-s0@3"] == ("sft-preserve-s0@3", "rl-preserve-s0@3") and len(pairs) == 3
    assert compared_pairs(labels, []) == {}
    assert compared_pairs(["rl-s0@4", "replay-s0@4"], [Comparison("replay", "rl")]) == {
        "replay:rl:-s0@4": ("replay-s0@4", "rl-s0@4")
    }
    for key, comparison, label in [
        ("-s1@20", DEFAULT_COMPARISON, ModelLabel(RunId("", seed=1), step=20)),
        ("", DEFAULT_COMPARISON, ModelLabel(RunId(""))),
        ("-s0@acc:0.5", DEFAULT_COMPARISON, ModelLabel(RunId("", seed=0), level="acc:0.5")),
        ("sft-preserve:rl-preserve:-s0@3", preserve, ModelLabel(RunId("", seed=0), step=3)),
        ("replay:rl:@kl:1", Comparison("replay", "rl"), ModelLabel(RunId(""), level="kl:1")),
    ]:
        assert pair_comparison(key) == comparison and pair_label(key) == label
    for bad in ("sft", "sft:", ":rl", "sft:sft", "a:b:c"):
        with pytest.raises(ValueError, match="expected FIRST:SECOND"):
            Comparison.parse(bad)


def test_a_study_declares_what_it_compares():
    assert StudyConfig(methods=["sft", "rl"]).compared == [DEFAULT_COMPARISON]
    assert StudyConfig(methods=["sft", "replay"]).compared == []
    declared = StudyConfig(methods=["sft", "replay", "rl"], comparisons=["replay:rl", "sft:rl"])
    assert declared.compared == [Comparison("replay", "rl"), DEFAULT_COMPARISON]
    with pytest.raises(ForgetlensError) as refused:  # refused when built, every problem named
        StudyConfig(methods=["sft", "rl"], comparisons=["replay:rl", "sft"])
    assert "comparisons: replay:rl compares replay, not in methods ['sft', 'rl']" in str(refused.value)
    assert "comparisons: expected FIRST:SECOND, two different methods, got 'sft'" in str(refused.value)


def test_a_study_names_its_runs_so_that_they_parse_back():
    cfg = StudyConfig(methods=["sft", "rl"], seeds=[0, 3], sft_lr_grid=[1e-5], rl_from_sft=True)
    runs = run_configs(cfg)
    assert set(runs) == {
        "sft-s0",
        "sft-s3",
        "rl-s0",
        "rl-s3",
        "sft-lr1e-05-s0",
        "sft-lr1e-05-s3",
        "sft-rl-s0",
        "sft-rl-s3",
    }
    for name, ft in runs.items():
        run = RunId.parse(name)
        assert (run.seed, run.method if run.chain is None else "rl") == (ft.seed, ft.method)
        assert run.lr == (ft.lr_sft if run.lr is not None else None)
    assert starts_from("sft-rl-s3") == "sft-s3" and starts_from("sft-s3") is None
    assert runs["sft-rl-s3"].init_from.endswith("runs/sft-s3")
