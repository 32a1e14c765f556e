"""Flags made from the option dataclasses (``cli_options.py``): type, choices, default and help are the field's."""

from __future__ import annotations

import dataclasses

import click
import pytest
from helpers import run_cli
from test_options import OPTION_CLASSES

from forgetlens import cli
from forgetlens.cli_options import apply_options, param_name
from forgetlens.config import options
from forgetlens.config.options import FinetuneConfig


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_field_of_every_option_class_has_a_docstring(cls):
    assert set(cls.field_docs()) == {f.name for f in dataclasses.fields(cls)}
    assert all(doc.strip() for doc in cls.field_docs().values())


def test_field_flags_say_what_the_dataclass_says():
    command = cli.cli.commands["finetune"]
    by_name = {p.name: p for p in command.params}
    steps = by_name["steps"]
    assert steps.default is None and steps.type is click.INT  # None: the config's own default applies
    assert FinetuneConfig.field_docs()["steps"] in steps.help and f"[default: {FinetuneConfig().steps}]" in steps.help
    loss = by_name[param_name("rl.loss_type")]
    assert "--loss-type" in loss.opts and "One of: dr_grpo, grpo, dapo, reinforce." in loss.help
    heads = by_name[param_name("preserve.heads")]
    assert heads.opts == ["--heads"] and heads.help.startswith("sft-preserve / rl-preserve: ")
    discover = {p.name: p for p in cli.cli.commands["discover"].params}
    assert discover["faithfulness_target"].opts == ["--target"]
    assert f"[default: {options.DiscoveryConfig().faithfulness_target}]" in discover["faithfulness_target"].help


def test_given_values_go_into_their_field_and_the_rest_keep_the_defaults():
    cfg = apply_options(FinetuneConfig(), {"steps": 6, "rl__loss_type": "grpo", "preserve__lam": None, "seed": 3})
    assert (cfg.steps, cfg.rl.loss_type, cfg.seed) == (6, "grpo", 3)
    assert cfg.preserve == FinetuneConfig().preserve and cfg.lr_sft == FinetuneConfig().lr_sft
    unchecked = apply_options(FinetuneConfig(), {"steps": 0})  # not checked here: the caller reports all at once
    assert unchecked.problems() == ["steps: expected a positive integer, got 0"]


def test_a_value_outside_a_fields_choices_names_the_flag(tmp_path):
    result = run_cli("discover", "--task", "ioi", "--ablation", "resample", "--out", str(tmp_path / "c.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --ablation: unknown ablation 'resample'; expected one of counterfactual, mean, zero"
    )
    result = run_cli("discover", "--task", "ioi", "--dbm-steps", "0", "--out", str(tmp_path / "c.json"))
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --dbm-steps: expected a positive")
    assert not (tmp_path / "c.json").exists()


def test_a_bool_field_is_a_flag_pair_and_a_list_field_repeats():
    """``AuditConfig.anatomy`` (bool) is ``--anatomy / --no-anatomy``, unset when neither is given; ``tuned``
    (a list) takes ``--tuned`` as often as given; problems name their flags."""
    from forgetlens.cli_options import refuse_problems
    from forgetlens.config.options import AuditConfig
    from forgetlens.errors import ForgetlensError

    command = cli.cli.commands["audit"]
    parse = lambda *args: command.make_context("audit", ["--out", "a.json", *args]).params  # noqa: E731
    given = parse("--base", "embedded", "--tuned", "sft=a", "--tuned", "rl=b", "--anatomy")
    assert given["tuned"] == ["sft=a", "rl=b"] and given["anatomy"] is True
    assert parse("--base", "embedded", "--tuned", "x=y", "--no-anatomy")["anatomy"] is False
    unset = parse("--base", "embedded", "--tuned", "x=y")
    assert unset["anatomy"] is None and unset["exact_everywhere"] is None  # the config's own default applies
    cfg = apply_options(AuditConfig(), {k: v for k, v in given.items() if k not in ("out", "allow_download")})
    assert cfg.tuned == ["sft=a", "rl=b"] and cfg.anatomy is True and cfg.top_m == AuditConfig().top_m
    with pytest.raises(ForgetlensError, match=r"^--n-boot: expected a positive integer, got 0\n--top-m: "):
        refuse_problems(apply_options(AuditConfig(), {"n_boot": 0, "top_m": -1}).problems())
    compared = parse("--base", "embedded", "--tuned", "x=y", "--compare", "replay:rl", "--compare", "sft:rl")["compare"]
    cfg = apply_options(AuditConfig(), {"compare": compared})
    assert [str(c) for c in cfg.compared] == ["replay:rl", "sft:rl"] and AuditConfig().compare == ["sft:rl"]
    with pytest.raises(ForgetlensError, match=r"^--compare: expected FIRST:SECOND, two different methods, got 'rl'$"):
        refuse_problems(apply_options(AuditConfig(), {"compare": ["rl"]}).problems())
