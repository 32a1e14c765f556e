"""Options are checked when built: a config made in Python is refused as a YAML file with the same values is."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from forgetlens.config import options
from forgetlens.config.loading import config_from_mapping
from forgetlens.config.options import (
    DISCOVERY_METHODS,
    DiscoveryConfig,
    FinetuneConfig,
    Options,
    RLConfig,
    StudyConfig,
    deferred_validation,
)
from forgetlens.embedded_build.config import PretrainConfig
from forgetlens.errors import ForgetlensError

OPTION_CLASSES = [
    c for c in vars(options).values() if isinstance(c, type) and issubclass(c, Options) and c is not Options
] + [PretrainConfig]


def test_every_options_class_builds_with_its_defaults_and_finds_nothing_wrong():
    assert len(OPTION_CLASSES) >= 10
    for cls in OPTION_CLASSES:
        assert dataclasses.is_dataclass(cls)
        assert cls().problems() == [], cls.__name__


def test_a_bad_value_is_refused_when_built_naming_class_and_field():
    with pytest.raises(ForgetlensError, match=r"^DiscoveryConfig\.method: unknown discovery method 'magic'"):
        DiscoveryConfig(method="magic")  # type: ignore[arg-type]
    with pytest.raises(ForgetlensError, match=r"^RLConfig\.loss_type: unknown loss type 'ppo'"):
        FinetuneConfig(rl=RLConfig(loss_type="ppo"))  # type: ignore[arg-type]
    with pytest.raises(ForgetlensError) as caught:
        StudyConfig(seeds=[], n_boot=0)
    assert str(caught.value).splitlines() == [
        "StudyConfig.seeds: expected at least one seed",
        "StudyConfig.n_boot: expected a positive integer, got 0",
    ]
    with pytest.raises(ForgetlensError, match="StudyConfig.seeds"):
        dataclasses.replace(StudyConfig(), seeds=[])


def test_a_missing_data_path_waits_for_the_run():
    """Construction does not look at the file system (a plan is made for data that is elsewhere)."""
    cfg = StudyConfig(data="/nonexistent/sciknoweval")
    assert cfg.problems(check_paths=False) == []
    assert any(p.startswith("data: /nonexistent") for p in cfg.problems())


def test_deferred_validation_builds_anything_and_problems_lists_it():
    with deferred_validation():
        cfg = DiscoveryConfig(method="magic", k=0)  # type: ignore[arg-type]
    assert [p.split(":")[0] for p in cfg.problems()] == ["method", "k"]
    with pytest.raises(ForgetlensError):
        DiscoveryConfig(method="magic")  # type: ignore[arg-type]  # deferral ends with the block


def test_a_file_with_several_problems_reports_them_all():
    data = {"methods": ["sft", "nope"], "seeds": [], "discovery": {"method": 3, "k": 0}}
    with pytest.raises(ForgetlensError) as caught:
        config_from_mapping(StudyConfig, data, "study.yaml", lambda c: c.problems(check_paths=False))
    lines = str(caught.value).splitlines()
    assert "study.yaml: discovery.method: expected str, got 3" in lines
    assert any(line.startswith("study.yaml: methods: unknown method 'nope'") for line in lines)
    assert any(line.startswith("study.yaml: seeds:") for line in lines)
    assert any(line.startswith("study.yaml: discovery.k:") for line in lines)


def test_value_sets_are_the_literal_types_of_their_fields():
    hints = typing.get_type_hints(DiscoveryConfig)
    assert typing.get_args(hints["method"]) == DISCOVERY_METHODS
    assert (
        typing.get_args(typing.get_args(typing.get_type_hints(StudyConfig)["methods"])[0]) == options.FINETUNE_METHODS
    )


def test_every_method_is_declared_once_and_an_unknown_one_is_an_error_not_sft():
    """``config/methods.py`` is the one place a method's trainer, loss term and rate live; a name that is not a
    method (``dpo`` was once read as SFT by its missing ``rl`` prefix) is one line naming the methods there are."""
    from forgetlens.config.methods import FINETUNE_METHODS, METHODS, finetune_method

    assert tuple(METHODS) == FINETUNE_METHODS
    for name, method in METHODS.items():
        assert FinetuneConfig(method=name).method == name  # every registered method is a valid config
        assert method.learning_rate_option == {"sft": "lr_sft", "rl": "lr_rl"}[method.trainer]
        assert method.trains_on_answers == (method.trainer == "sft")
    with pytest.raises(ForgetlensError, match=r"^unknown fine-tuning method 'dpo'; expected one of sft, rl, "):
        finetune_method("dpo")


def test_a_study_file_naming_missing_data_loads_for_a_plan_and_not_for_a_run(tmp_path):
    from forgetlens.config.loading import load_study_config

    path = tmp_path / "study.yaml"
    path.write_text("data: /nonexistent/sciknoweval\n")
    assert load_study_config(path, check_paths=False).data == "/nonexistent/sciknoweval"
    with pytest.raises(ForgetlensError, match=r"study.yaml: data: /nonexistent/sciknoweval does not exist"):
        load_study_config(path)
