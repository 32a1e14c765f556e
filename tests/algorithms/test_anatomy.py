"""Where a tuned model's change lives (``measure/anatomy.py``, ``analysis/anatomy.py``), checked against damage
planted in a known place of the embedded model: each planted change must be attributed to its own group and not
to others, identical models must give exactly zero, and two routes to the same intervention must agree."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from forgetlens.analysis.anatomy import summarise_anatomy
from forgetlens.circuits.circuit import head_mask
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.config.options import DiscoveryConfig
from forgetlens.measure.anatomy import (
    READOUTS,
    heads_computed_by,
    measure_anatomy,
    parameter_names,
    swapped_weights,
    weight_group,
)
from forgetlens.models.forward import answer_logits
from forgetlens.models.heads import HeadLayout
from forgetlens.report.anatomy import anatomy_lines
from forgetlens.tasks.base import task_metric
from forgetlens.tasks.registry import get_task


@pytest.fixture(scope="module")
def setup(embedded):
    task = get_task("ioi")
    circuit = discover_circuit(embedded.model, embedded.tokenizer, task, DiscoveryConfig(n_examples=32, k=4))
    layout = HeadLayout.of(embedded.model)
    _, evaluation = task_splits(embedded.tokenizer, task, 32, 0)
    return embedded, layout, evaluation, head_mask(circuit.heads, layout), circuit.heads, circuit.scores


def anatomy_of(setup, tuned, **kwargs):
    loaded, layout, evaluation, mask, heads, _ = setup
    a = measure_anatomy(loaded.model, tuned, loaded.tokenizer, layout, evaluation, mask, min_block=1, **kwargs)
    return a, summarise_anatomy(a, heads, n_boot=200)


def share(summary, name, metric="logp_answer", kind="induced"):
    return summary[kind][name][metric]["share"]["value"]


@pytest.mark.slow
def test_identical_models_give_exactly_zero(setup):
    base = setup[0].model
    a, s = anatomy_of(setup, copy.deepcopy(base))
    for reads in list(a.induced.values()) + list(a.restored.values()) + [a.tuned]:
        for m in READOUTS:
            assert np.array_equal(reads[m], a.base[m]), m
    assert not a.head_estimates.any() and all(not v.any() for v in a.head_exact.values())
    assert all(np.isnan(share(s, name)) for name in s["induced"])  # nothing changed: no share to give
    assert all(v["value"] == 0 for v in s["format"]["mass_moved"].values())
    text = " ".join(anatomy_lines("ioi", "same", s))  # in words (audit's output, the report) without a crash
    assert "exactly 0" in text and "+exactly" not in text


def test_parameters_fall_into_groups_that_partition_the_model(setup):
    base = setup[0].model
    names = [n for n, _ in base.named_parameters()]
    groups = {n: weight_group(n)[0] for n in names}
    assert groups["model.layers.1.self_attn.q_proj.weight"] == "attention"
    assert groups["model.layers.1.input_layernorm.weight"] == "attention"
    assert groups["model.layers.1.post_attention_layernorm.weight"] == "mlp"
    assert groups["model.embed_tokens.weight"] == "embeddings" and groups["model.norm.weight"] == "final_norm"
    assert "other" not in groups.values()
    assert weight_group("transformer.h.3.attn.c_attn.weight") == ("attention", 3)
    assert weight_group("transformer.h.3.ln_2.weight") == ("mlp", 3)
    assert (
        weight_group("transformer.ln_f.bias")[0] == "final_norm" and weight_group("lm_head.weight")[0] == "unembedding"
    )


def _perturbed(base, fn):
    tuned = copy.deepcopy(base)
    torch.manual_seed(0)
    with torch.no_grad():
        fn(tuned)
    return tuned


def test_joint_local_over_all_heads_is_the_attention_weights_hybrid(setup):
    loaded, layout, evaluation, _, _, _ = setup
    base = loaded.model
    tuned = _perturbed(
        base, lambda m: [p.add_(0.05 * torch.randn_like(p)) for n, p in m.named_parameters() if "self_attn" in n]
    )
    part = evaluation.subset(range(16))
    everyone = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    with torch.no_grad(), heads_computed_by(layout, base, tuned, everyone):
        local = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    names = parameter_names(base, "attention")
    with torch.no_grad(), swapped_weights(base, tuned, names):
        hybrid = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    with torch.no_grad():
        plain = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    assert (hybrid - plain).abs().max() > 0.1  # the perturbation is visible
    torch.testing.assert_close(local, hybrid, atol=1e-4, rtol=1e-4)


def _outside_head(setup) -> tuple[int, int]:
    """The head outside C0, below the last layer, of largest |attribution score|."""
    _, layout, _, mask, _, scores = setup
    size = scores.abs().masked_fill(mask, -1.0)
    size[-1] = -1.0
    layer, head = divmod(int(size.flatten().argmax()), layout.n_heads)
    return layer, head


def test_damage_to_one_head_outside_the_circuit_is_found_in_that_head(setup):
    loaded, layout, _, mask, _, _ = setup
    layer, head = _outside_head(setup)
    d = layout.d_head

    def damage(m):
        rows = m.model.layers[layer].self_attn.q_proj.weight[head * d : (head + 1) * d]
        rows.copy_(10 * rows.norm() * torch.randn_like(rows) / rows.numel() ** 0.5)  # a new attention pattern

    a, s = anatomy_of(setup, _perturbed(loaded.model, damage), metric="logp_answer")
    change = s["behaviour"]["logp_answer"]["change"]["value"]
    assert abs(change) > 0.05, change
    assert share(s, "weights/attention") == pytest.approx(1.0, abs=1e-3)
    assert share(s, "attention", kind="restored") == pytest.approx(1.0, abs=1e-3)
    for group in ("weights/mlp", "weights/embeddings", "weights/final_norm", "joint_local/C0"):
        assert share(s, group) == pytest.approx(0.0, abs=1e-3), group
    assert share(s, "joint_total/all_heads") == pytest.approx(1.0, abs=1e-3)
    top = s["heads_outside_circuit"][0]
    assert (top["layer"], top["head"]) == (layer, head)
    assert top["share_exact"]["value"] == pytest.approx(1.0, abs=1e-3)
    assert s["blocks"]["attention"][-2:] in (
        [[layer, layer + 1], [layer + 1, layer + 2]],
        [[layer - 1, layer], [layer, layer + 1]],
    )
    assert f"weights/attention@{layer}-{layer}" in s["induced"]


def test_damage_to_one_mlp_is_found_in_that_layer(setup):
    loaded, layout, _, _, _, _ = setup
    layer = 1
    a, s = anatomy_of(
        setup,
        _perturbed(
            loaded.model,
            lambda m: m.model.layers[layer].mlp.down_proj.weight.add_(
                0.5 * torch.randn_like(m.model.layers[layer].mlp.down_proj.weight)
            ),
        ),
    )
    assert abs(s["behaviour"]["logp_answer"]["change"]["value"]) > 0.05
    assert share(s, "weights/mlp") == pytest.approx(1.0, abs=1e-3)
    assert share(s, "mlp_total") == pytest.approx(1.0, abs=1e-3)
    assert share(s, f"weights/mlp@{layer}-{layer}") == pytest.approx(1.0, abs=1e-3)
    for group in ("weights/attention", "weights/embeddings", "joint_local/C0"):
        assert share(s, group) == pytest.approx(0.0, abs=1e-3), group
    assert share(s, "weights/mlp@2-3") == pytest.approx(0.0, abs=1e-3)  # the half the search left


def _newline_bias(setup, boost: float = 25.0):
    """The base model with the newline token's unembedding row moved along the mean answer-position hidden state,
    so its logit rises by about ``boost`` there (a readout shift, no change to any circuit)."""
    loaded, _, evaluation, _, _, _ = setup
    base, tok = loaded.model, loaded.tokenizer
    newline = tok("\n", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        hidden = base.model(input_ids=evaluation.clean_ids, attention_mask=evaluation.attention_mask).last_hidden_state
        h = hidden[torch.arange(len(evaluation)), evaluation.answer_pos].mean(0)  # [d_model]
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        tuned.lm_head.weight[newline] += boost * h / h.dot(h)  # tied: also the newline's input embedding
    return tuned, newline


def test_a_planted_readout_shift_is_format_not_circuit(setup):
    loaded, _, evaluation, _, _, _ = setup
    assert not (evaluation.clean_ids == loaded.tokenizer("\n", add_special_tokens=False)["input_ids"][0]).any()
    tuned, _ = _newline_bias(setup)
    a, s = anatomy_of(setup, tuned)
    assert s["behaviour"]["correct"]["tuned"] < s["behaviour"]["correct"]["base"] - 0.3  # the skill "fell"
    assert share(s, "weights/embeddings") == pytest.approx(1.0, abs=1e-3)  # tied: embeddings carry the readout
    for group in ("joint_total/C0", "joint_local/C0", "joint_total/all_heads", "weights/attention", "weights/mlp"):
        assert share(s, group) == pytest.approx(0.0, abs=1e-3), group
    fmt = s["format"]
    wrong = fmt["tuned"]["top1_kind_when_wrong"]
    assert wrong["end_of_line"] == fmt["tuned"]["n_wrong"] > 0
    assert fmt["mass_moved"]["end_of_line"]["ci_low"] > 0.3
    assert fmt["mass_moved"]["answer"]["value"] < 0


def test_whole_vocabulary_metrics_register_a_loss_the_logit_difference_misses(setup):
    """Moving probability to a third token (newline) leaves answer - distractor unchanged but not log p."""
    loaded, _, evaluation, _, _, _ = setup
    tuned, _ = _newline_bias(setup)
    with torch.no_grad():
        b = answer_logits(loaded.model, evaluation.clean_ids, evaluation.attention_mask, evaluation.answer_pos)
        t = answer_logits(tuned, evaluation.clean_ids, evaluation.attention_mask, evaluation.answer_pos)
    diff = lambda m: (task_metric(t, evaluation, m) - task_metric(b, evaluation, m)).mean().item()
    assert abs(diff("logit_diff")) < 1e-4
    assert diff("logp_answer") < -1.0 and diff("top1_margin") < -1.0 and diff("prob_answer") < -0.1


def test_top1_margin_is_positive_exactly_when_the_answer_is_top1(setup):
    loaded, _, evaluation, _, _, _ = setup
    with torch.no_grad():
        logits = answer_logits(loaded.model, evaluation.clean_ids, evaluation.attention_mask, evaluation.answer_pos)
    margin = task_metric(logits, evaluation, "top1_margin")
    assert torch.equal(margin > 0, logits.argmax(-1) == evaluation.answer_ids)
    reference = torch.stack(
        [
            logits[i, a] - torch.cat([logits[i, :a], logits[i, a + 1 :]]).max()
            for i, a in enumerate(evaluation.answer_ids)
        ]
    )
    torch.testing.assert_close(margin, reference)


def test_joint_claims_compare_the_two_runs_prompt_by_prompt():
    """DCV_joint = V_joint(SFT) - V_joint(RL) with V_joint = -(the intervention's effect), per prompt; with one seed
    the interval is a bootstrap over those prompts."""
    from forgetlens.analysis.summary import _joint_claims

    def summary(total, local, change, correct):
        return {
            "metric": "logp_answer",
            "per_prompt": {
                "logp_answer": {"change": change, "joint_total/C0": total, "joint_local/C0": local},
                "correct": {"change": correct},
            },
        }

    results = {
        "runs": {"sft-s0": {"method": "sft", "seed": 0}, "rl-s0": {"method": "rl", "seed": 0}},
        "tasks": {
            "ioi": {
                "anatomy": {
                    "sft-s0@12": summary([-1.0, -3.0], [0.0, 0.0], [-2.0, -4.0], [-1.0, 0.0]),
                    "rl-s0@12": summary([-0.5, -0.5], [0.0, 0.0], [-1.0, -1.0], [0.0, 0.0]),
                }
            }
        },
    }
    joint = _joint_claims(results, "ioi", 12)
    assert joint["dcv_joint_total"]["value"] == pytest.approx(1.5)  # SFT's C0 takes 2 nats, RL's 0.5
    assert joint["dcv_joint_local"]["value"] == 0.0 and joint["dcv_joint_local_verdict"] == "negligible"  # exactly 0
    assert joint["forgetting_same_prompts"]["value"] == pytest.approx(0.5)
    assert joint["dcv_joint_total"]["ci_low"] <= 1.5 <= joint["dcv_joint_total"]["ci_high"]
    assert _joint_claims(results, "ioi", 24) == {}  # no anatomy at that step


def test_the_command_line_offers_every_metric():
    from forgetlens.config.options import METRIC_NAMES
    from forgetlens.tasks.base import METRICS

    assert METRIC_NAMES == METRICS


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_joint_local_equals_the_attention_hybrid_on_other_architectures(tokenizer, arch):
    from helpers import make_tiny

    from forgetlens.tasks import encode_examples

    base = make_tiny(arch, len(tokenizer))
    layout = HeadLayout.of(base)
    part = encode_examples(tokenizer, get_task("ioi").examples(8, 0), "ioi")
    tuned = _perturbed(
        base,
        lambda m: [
            p.add_(0.2 * p.std() * torch.randn_like(p))
            for n, p in m.named_parameters()
            if weight_group(n)[0] == "attention" and n.endswith("weight")
        ],
    )
    everyone = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    with torch.no_grad(), heads_computed_by(layout, base, tuned, everyone):
        local = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    with torch.no_grad(), swapped_weights(base, tuned, parameter_names(base, "attention")):
        hybrid = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    with torch.no_grad():
        plain = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
    assert (hybrid - plain).abs().max() > 1e-3
    torch.testing.assert_close(local, hybrid, atol=1e-4, rtol=1e-4)
