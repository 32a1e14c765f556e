"""The shipped embedded base model: prior capabilities learned, circuits real and recoverable."""

import pytest

from forgetlens.circuits.validation import validate_task
from forgetlens.models.forward import task_accuracy
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks import encode_examples, get_task, task_names

TASKS = ["induction", "ioi", "greater_than", "fact_recall"]


@pytest.fixture(scope="module")
def validation(embedded):
    return {name: validate_task(embedded.model, embedded.tokenizer, get_task(name), n=96, seed=7) for name in TASKS}


def test_embedded_is_a_qwen2_model(embedded):
    assert type(embedded.model).__name__ == "Qwen2ForCausalLM"
    layout = HeadLayout.of(embedded.model)
    assert layout.n_total >= 16


@pytest.mark.parametrize("name", TASKS)
def test_prior_task_held_out_accuracy_is_at_least_95_percent(embedded, name):
    batch = encode_examples(embedded.tokenizer, get_task(name).examples(200, seed=12345), name)
    assert task_accuracy(embedded.model, batch)["accuracy"] >= 0.95


@pytest.mark.parametrize("name", TASKS)
def test_attribution_agrees_with_exact_patching(validation, name):
    assert validation[name]["spearman_attribution_vs_exact"] >= 0.9


@pytest.mark.parametrize("name", TASKS)
def test_small_faithful_circuit_exists(validation, name):
    assert validation[name]["circuit_fraction"] <= 0.25
    assert validation[name]["circuit_faithfulness"] >= 0.8


def test_tasks_use_different_heads(validation):
    circuits = {name: frozenset(map(tuple, validation[name]["circuit_heads"])) for name in TASKS}
    assert len(set(circuits.values())) > 1
