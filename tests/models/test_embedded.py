"""The shipped embedded base model: prior capabilities learned, circuits real and recoverable.

Measured on the same prompts as the model card (512 discovery + 512 evaluation prompts, seed 0).
"""

import dataclasses
import json

import pytest

from forgetlens.embedded_build.config import PretrainConfig
from forgetlens.embedded_build.validation import validate_task
from forgetlens.measure.behaviour import task_accuracy
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import EMBEDDED_DIR
from forgetlens.tasks import encode_examples, get_task

TASKS = ["copying", "ioi", "greater_than", "fact_recall"]


VALIDATION_SAMPLE = 256
"""Prompts per task here: half the model card's (``VALIDATION_PROMPTS``), which the thresholds hold on with room."""


@pytest.fixture(scope="module")
def validation(embedded):
    model, tokenizer = embedded.model, embedded.tokenizer
    return {name: validate_task(model, tokenizer, get_task(name), n=VALIDATION_SAMPLE, seed=0) for name in TASKS}


def test_embedded_is_a_qwen2_model(embedded):
    assert type(embedded.model).__name__ == "Qwen2ForCausalLM"
    assert HeadLayout.of(embedded.model).n_total == 32


@pytest.mark.parametrize("name", TASKS)
def test_prior_task_held_out_accuracy_is_at_least_95_percent(embedded, name):
    batch = encode_examples(embedded.tokenizer, get_task(name).examples(200, seed=12345), name)
    assert task_accuracy(embedded.model, batch)["accuracy"] >= 0.95


def test_pretrain_defaults_are_the_shipped_recipe():
    """`forgetlens pretrain-base` with no options rebuilds the shipped model: its card records the defaults."""
    card = json.loads((EMBEDDED_DIR / "card.json").read_text())
    assert card["pretrain_config"] == json.loads(json.dumps(dataclasses.asdict(PretrainConfig())))


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_attribution_agrees_with_exact_patching(validation, name):
    assert validation[name]["spearman_attribution_vs_exact"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_small_faithful_circuit_exists(validation, name):
    assert validation[name]["circuit_faithfulness"] >= 0.8
    assert validation[name]["circuit_fraction"] <= 0.25


@pytest.mark.slow
def test_every_task_has_a_faithful_circuit(validation):
    for name in TASKS:
        assert validation[name]["circuit_faithfulness"] >= 0.8


@pytest.mark.slow
def test_tasks_use_different_heads(validation):
    circuits = {name: frozenset(map(tuple, validation[name]["circuit_heads"])) for name in TASKS}
    assert len(set(circuits.values())) == len(TASKS)
