"""The shipped embedded base model: prior capabilities learned, circuits real and recoverable.

Measured on the same prompts as the model card (512 discovery + 512 evaluation prompts, seed 0).
Requirements the current checkpoint does not meet are kept as strict xfails, so they stay visible
and a checkpoint that meets them turns the suite red until the marker is removed.
"""

import pytest

from forgetlens.circuits.validation import validate_task
from forgetlens.models.forward import task_accuracy
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks import encode_examples, get_task

TASKS = ["induction", "ioi", "greater_than", "fact_recall"]
# fact recall: attribution underestimates its two heads' saturated effects and ranks the 30 near-zero heads
# differently from exact patching (see the README's known gaps)
SPEARMAN_GAP = {"fact_recall"}
SIZE_GAP = {"ioi", "greater_than"}  # smallest faithful circuit is larger than a quarter of the heads


def known_gap(name: str, gap: set[str], what: str):
    marks = [pytest.mark.xfail(strict=True, reason=f"embedded checkpoint: {what}")] if name in gap else []
    return pytest.param(name, marks=marks)


@pytest.fixture(scope="module")
def validation(embedded):
    return {name: validate_task(embedded.model, embedded.tokenizer, get_task(name), seed=0) for name in TASKS}


def test_embedded_is_a_qwen2_model(embedded):
    assert type(embedded.model).__name__ == "Qwen2ForCausalLM"
    assert HeadLayout.of(embedded.model).n_total == 32


@pytest.mark.parametrize("name", TASKS)
def test_prior_task_held_out_accuracy_is_at_least_95_percent(embedded, name):
    batch = encode_examples(embedded.tokenizer, get_task(name).examples(200, seed=12345), name)
    assert task_accuracy(embedded.model, batch)["accuracy"] >= 0.95


@pytest.mark.parametrize("name", [known_gap(t, SPEARMAN_GAP, "attribution/exact Spearman < 0.9") for t in TASKS])
def test_attribution_agrees_with_exact_patching(validation, name):
    assert validation[name]["spearman_attribution_vs_exact"] >= 0.9


@pytest.mark.parametrize("name", [known_gap(t, SIZE_GAP, "circuit with f >= 0.8 needs > 25% of heads") for t in TASKS])
def test_small_faithful_circuit_exists(validation, name):
    assert validation[name]["circuit_faithfulness"] >= 0.8
    assert validation[name]["circuit_fraction"] <= 0.25


def test_every_task_has_a_faithful_circuit(validation):
    for name in TASKS:
        assert validation[name]["circuit_faithfulness"] >= 0.8


def test_tasks_use_different_heads(validation):
    circuits = {name: frozenset(map(tuple, validation[name]["circuit_heads"])) for name in TASKS}
    assert len(set(circuits.values())) == len(TASKS)
