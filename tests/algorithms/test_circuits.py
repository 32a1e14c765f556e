"""Circuit discovery checked against ground truth on tiny models."""

import math

import pytest
import torch
from helpers import make_tiny

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.circuit import (
    SCORERS,
    default_ks,
    faithfulness_baseline,
    faithfulness_curve,
    head_mask,
    normalised_faithfulness,
    rank_heads,
    score_heads,
)
from forgetlens.circuits.patching import circuit_metric, exact_head_effects, head_outputs, run_metric
from forgetlens.models.heads import HeadLayout, capture_heads, frozen_parameters, head_hooks
from forgetlens.tasks import encode_examples, get_task
from forgetlens.tasks.base import task_metric

PLANTED = [(0, 1), (1, 2), (1, 3)]


def ioi_batch(tokenizer, n=24, seed=0):
    return encode_examples(tokenizer, get_task("ioi").examples(n, seed), "ioi")


def plant_circuit(model, layout: HeadLayout, heads, scale: float = 4.0):
    """Silence every head outside ``heads`` (zero its o_proj columns) and amplify the planted ones."""
    with torch.no_grad():
        for layer, proj in enumerate(layout.projections(model)):
            for head in range(layout.n_heads):
                cols = slice(head * layout.d_head, (head + 1) * layout.d_head)
                proj.weight[:, cols] *= scale if (layer, head) in heads else 0.0
    return model


def test_the_scorers_are_the_scoring_methods():
    from forgetlens.config.options import SCORING_METHODS

    assert set(SCORERS) == set(SCORING_METHODS)


@pytest.mark.parametrize("method", sorted(SCORERS))
def test_planted_circuit_is_recovered_exactly(tokenizer, method):
    model = make_tiny("qwen2", len(tokenizer), seed=1)
    layout = HeadLayout.of(model)
    plant_circuit(model, layout, PLANTED)
    batch = ioi_batch(tokenizer)
    scores = score_heads(model, layout, batch, method, metric="logit_diff").mean(0)
    found = set(rank_heads(scores)[: len(PLANTED)])
    precision = len(found & set(PLANTED)) / len(found)
    recall = len(found & set(PLANTED)) / len(PLANTED)
    assert precision == recall == 1.0
    # every other head has exactly zero effect, and the planted set alone is fully faithful
    others = ~head_mask(PLANTED, layout)
    assert scores[others].abs().max() == 0
    assert (scores[~others].abs() > 0).all()
    base = faithfulness_baseline(model, layout, batch, "counterfactual", "logit_diff")
    m = circuit_metric(model, layout, batch, head_mask(PLANTED, layout), "counterfactual", metric="logit_diff")
    assert normalised_faithfulness(m, base) == pytest.approx(1.0, abs=1e-6)


def slow_attribution(model, layout, batch, metric="logit_diff"):
    """The attribution formula written out prompt by prompt, head by head, with a full backward."""
    n = len(batch)
    out = torch.zeros(n, layout.n_layers, layout.n_heads, dtype=torch.float64)
    for i in range(n):
        one = batch.subset([i])
        with torch.no_grad(), capture_heads(model, layout) as corrupt_acts:
            model(input_ids=one.corrupted_ids, attention_mask=one.attention_mask)
        corrupt_acts = [z.clone() for z in corrupt_acts]
        model.zero_grad()
        with capture_heads(model, layout) as clean_acts:
            logits = model(input_ids=one.clean_ids, attention_mask=one.attention_mask).logits
            for z in clean_acts:
                z.retain_grad()
        m = task_metric(logits[0, one.answer_pos], one, metric)
        m.sum().backward()
        for layer in range(layout.n_layers):
            z_clean, grad = clean_acts[layer][0], clean_acts[layer].grad[0]  # [pos, n_heads * d_head]
            for head in range(layout.n_heads):
                cols = slice(head * layout.d_head, (head + 1) * layout.d_head)
                total = 0.0
                for pos in range(z_clean.shape[0]):
                    delta = corrupt_acts[layer][0, pos, cols] - z_clean[pos, cols]
                    total += float(torch.dot(delta.detach().double(), grad[pos, cols].double()))
                out[i, layer, head] = total
    model.zero_grad()
    return out


@pytest.mark.parametrize(
    "metric,dtype,atol",
    [("logit_diff", torch.float32, 1e-5), ("logit_diff", torch.float64, 1e-10), ("prob_diff", torch.float64, 1e-10)],
)
def test_fast_attribution_equals_slow_reference(tokenizer, metric, dtype, atol):
    model = make_tiny("qwen2", len(tokenizer), seed=2).to(dtype)
    layout = HeadLayout.of(model)
    batch = ioi_batch(tokenizer, n=6)
    fast = attribution_scores(model, layout, batch, metric=metric, batch_size=4)  # batched, activation-only backward
    slow = slow_attribution(model, layout, batch, metric)
    assert fast.shape == slow.shape
    assert torch.allclose(fast.double(), slow, atol=atol, rtol=0)
    assert slow.abs().max() > 1000 * atol  # the comparison is not between near-zeros


def test_ig_agrees_with_exact_on_a_tiny_model(tokenizer):
    """EAP-IG tracks exact patching (a different path from attribution's, so not identical to it)."""
    model = make_tiny("qwen2", len(tokenizer), seed=3)
    layout = HeadLayout.of(model)
    batch = ioi_batch(tokenizer, n=12)
    exact = exact_head_effects(model, layout, batch, metric="logit_diff").mean(0)
    plain = attribution_scores(model, layout, batch, metric="logit_diff").mean(0)
    ig = attribution_scores(model, layout, batch, metric="logit_diff", ig_steps=16).mean(0)
    assert torch.corrcoef(torch.stack([exact.flatten(), ig.flatten()]))[0, 1] > 0.95
    assert torch.corrcoef(torch.stack([exact.flatten(), plain.flatten()]))[0, 1] > 0.95
    assert not torch.allclose(ig, plain)


def test_denoising_is_measured_on_the_corrupted_run(tokenizer):
    model = make_tiny("qwen2", len(tokenizer), seed=1)
    layout = HeadLayout.of(model)
    plant_circuit(model, layout, PLANTED)
    batch = ioi_batch(tokenizer, n=8)
    denoise = exact_head_effects(model, layout, batch, metric="logit_diff", direction="denoising").mean(0)
    noise = exact_head_effects(model, layout, batch, metric="logit_diff", direction="noising").mean(0)
    others = ~head_mask(PLANTED, layout)
    assert denoise[others].abs().max() == 0
    assert (denoise[~others].abs() > 0).all()
    assert not torch.allclose(denoise, -noise)  # a different experiment, not a sign flip of the same one
    fast = attribution_scores(model, layout, batch, metric="logit_diff", direction="denoising").mean(0)
    assert set(rank_heads(fast)[:3]) == set(PLANTED)


def test_ablation_endpoints(tokenizer, tiny_qwen2):
    layout = HeadLayout.of(tiny_qwen2)
    batch = ioi_batch(tokenizer, n=10)
    everyone = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    full = run_metric(tiny_qwen2, batch, "logit_diff")
    for ablation in ("counterfactual", "mean", "zero"):
        assert torch.equal(circuit_metric(tiny_qwen2, layout, batch, everyone, ablation, metric="logit_diff"), full)
        curve, _ = faithfulness_curve(
            tiny_qwen2,
            layout,
            batch,
            rank_heads(torch.randn(2, 4)),
            default_ks(layout.n_total),
            ablation,
            metric="logit_diff",
        )
        assert curve[0]["faithfulness"] == pytest.approx(0.0, abs=1e-9)
        assert curve[-1]["faithfulness"] == pytest.approx(1.0, abs=1e-9)
    # zero ablation of every head equals a model whose output projections are zero
    nobody = ~everyone
    ablated = circuit_metric(tiny_qwen2, layout, batch, nobody, "zero", metric="logit_diff")
    with torch.no_grad():
        for proj in layout.projections(tiny_qwen2):
            proj.weight.zero_()
    assert torch.allclose(ablated, run_metric(tiny_qwen2, batch, "logit_diff"), atol=1e-5)


def test_mean_ablation_uses_per_position_means(tokenizer, tiny_qwen2):
    from forgetlens.circuits.patching import mean_head_outputs

    layout = HeadLayout.of(tiny_qwen2)
    batch = encode_examples(tokenizer, get_task("induction").examples(16, 0), "induction")  # varying lengths
    mean = mean_head_outputs(tiny_qwen2, layout, batch, batch_size=5)
    acts = head_outputs(tiny_qwen2, layout, batch)
    pos = int(batch.answer_pos.max())
    rows = batch.attention_mask[:, pos].bool()
    assert torch.allclose(mean[:, 0, pos], acts[:, rows, pos].mean(1), atol=1e-6)


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.clean_ids, attention_mask=batch.attention_mask).logits


def test_hooks_leave_the_model_unchanged_even_after_errors(tokenizer, tiny_qwen2):
    layout = HeadLayout.of(tiny_qwen2)
    batch = ioi_batch(tokenizer, n=6)
    before = _logits(tiny_qwen2, batch)
    flags = [p.requires_grad for p in tiny_qwen2.parameters()]
    score_heads(tiny_qwen2, layout, batch, "attribution", metric="logit_diff")
    score_heads(tiny_qwen2, layout, batch, "exact", metric="logit_diff")
    score_heads(tiny_qwen2, layout, batch, "ig", metric="logit_diff", ig_steps=2)
    circuit_metric(tiny_qwen2, layout, batch, head_mask([(0, 0)], layout), "mean", metric="logit_diff")

    def boom(layer, z):
        raise RuntimeError("failure inside a hook")

    with pytest.raises(RuntimeError, match="failure inside a hook"):
        with head_hooks(tiny_qwen2, layout, boom):
            _logits(tiny_qwen2, batch)
    with pytest.raises(RuntimeError, match="failure after freezing"):
        with frozen_parameters(tiny_qwen2):
            raise RuntimeError("failure after freezing")
    assert torch.equal(_logits(tiny_qwen2, batch), before)
    assert [p.requires_grad for p in tiny_qwen2.parameters()] == flags
    assert all(not proj._forward_pre_hooks for proj in layout.projections(tiny_qwen2))


def test_spearman_interval_collapses_when_every_prompt_gives_the_same_effects():
    import numpy as np
    from scipy.stats import spearmanr

    from forgetlens.embedded_build.validation import spearman_over_heads

    rng = np.random.default_rng(0)
    attribution_row, exact_row = rng.normal(size=(2, 3, 4))  # [layer, head] each
    attribution, exact = np.repeat(attribution_row[None], 10, 0), np.repeat(exact_row[None], 10, 0)
    value, low, high = spearman_over_heads(attribution, exact, n_boot=50)
    assert value == pytest.approx(spearmanr(attribution_row.ravel(), exact_row.ravel()).statistic)
    assert low == pytest.approx(value) and high == pytest.approx(value)


def test_spearman_interval_widens_with_prompt_noise():
    """The point value is the Spearman of the mean effects.  (A percentile interval need not cover it: near 1 a
    correlation's resamples can all lie on one side.)"""
    import numpy as np
    from scipy.stats import spearmanr

    from forgetlens.embedded_build.validation import spearman_over_heads

    rng = np.random.default_rng(1)
    effects = rng.normal(size=(4, 8))  # [layer, head]
    widths = []
    for noise in (0.1, 3.0):
        exact = effects + noise * rng.normal(size=(64, 4, 8))  # [prompt, layer, head]
        attribution = 0.5 * effects + noise * rng.normal(size=(64, 4, 8))
        value, low, high = spearman_over_heads(attribution, exact, n_boot=200)
        assert value == pytest.approx(spearmanr(attribution.mean(0).ravel(), exact.mean(0).ravel()).statistic)
        widths.append(high - low)
    assert widths[0] < widths[1]


@pytest.mark.parametrize("ablation", ["counterfactual", "mean", "zero"])
def test_faithfulness_probe_equals_the_per_size_reference(tokenizer, tiny_qwen2, ablation):
    """The cached ablation source gives exactly the curve that recomputing it for every size gives, with the
    attribution pass's corrupted outputs and clean metric reused (counterfactual) or computed by the probe."""
    from forgetlens.circuits.attribution import attribution_pass
    from forgetlens.circuits.circuit import FaithfulnessProbe

    layout = HeadLayout.of(tiny_qwen2)
    batch = ioi_batch(tokenizer, n=10)
    order = rank_heads(torch.randn(2, 4, generator=torch.Generator().manual_seed(1)))
    ks = default_ks(layout.n_total)
    reference, _ = faithfulness_curve(tiny_qwen2, layout, batch, order, ks, ablation, metric="logit_diff", batch_size=4)
    scored = attribution_pass(tiny_qwen2, layout, batch, metric="logit_diff", batch_size=4, keep_donor_outputs=True)
    probe = FaithfulnessProbe(
        tiny_qwen2,
        layout,
        batch,
        ablation,
        metric="logit_diff",
        batch_size=4,
        sources=scored.donor_outputs,
        full=scored.receiver_metric,
    )
    fast = probe.curve(order, ks)
    for want, got in zip(reference, fast):
        assert got["faithfulness"] == pytest.approx(want["faithfulness"], abs=1e-5)
    assert probe.evaluations == len(ks) - 1  # m(empty) once; f(all heads) = 1 costs nothing; f(0) reuses m(empty)


class _Curve:
    """A stand-in probe over a given faithfulness curve (f at top-k = values[k])."""

    def __init__(self, values):
        self.values, self.evaluations = values, 0

    def faithfulness(self, heads):
        self.evaluations += 1
        return self.values[len(heads)]


@pytest.mark.parametrize("n_heads,first", [(270, 1), (270, 7), (270, 200), (270, 270), (32, 3)])
def test_search_k_finds_the_first_size_reaching_the_target_on_a_monotone_curve(n_heads, first):
    from forgetlens.circuits.circuit import search_k

    values = [
        min(1.0, 0.8 * k / first) if k < first else 0.8 + 0.2 * (k - first) / max(1, n_heads - first)
        for k in range(n_heads + 1)
    ]
    values[n_heads] = 1.0
    probe = _Curve(values)
    k, points = search_k(probe, [(0, h) for h in range(n_heads)], 0.8)
    assert k == first
    assert probe.evaluations <= math.ceil(math.log2(n_heads + 1))
    assert all(p["faithfulness"] == values[p["k"]] for p in points)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["copying", "ioi", "greater_than", "fact_recall"])
def test_bisection_finds_the_circuit_the_full_curve_finds_on_the_embedded_model(embedded, name):
    from forgetlens.circuits.discover import discover_circuit
    from forgetlens.config.options import DiscoveryConfig

    task = get_task(name)
    fast = discover_circuit(embedded.model, embedded.tokenizer, task, DiscoveryConfig(n_examples=128))
    full = discover_circuit(embedded.model, embedded.tokenizer, task, DiscoveryConfig(n_examples=128, full_curve=True))
    assert fast.heads == full.heads
    assert fast.faithfulness == pytest.approx(full.faithfulness, abs=1e-6)
    assert len(fast.curve) < len(full.curve)


def test_top_heads_ranks_by_the_size_of_the_mean_effect_not_the_mean_size():
    """A head whose per-prompt effects cancel (+5, -5) has mean effect 0: it loses to a head with a steady +1."""
    from forgetlens.measure.first_order_cmap import top_heads

    effects = torch.zeros(2, 1, 3)  # [prompt, layer, head]
    effects[:, 0, 0] = torch.tensor([5.0, -5.0])
    effects[:, 0, 1] = torch.tensor([1.0, 1.0])
    effects[:, 0, 2] = torch.tensor([0.5, 0.4])
    always = torch.zeros(1, 3, dtype=torch.bool)
    assert top_heads(effects, 1, always).tolist() == [[False, True, False]]
    assert top_heads(effects, 2, always).tolist() == [[False, True, True]]
    always[0, 1] = True  # the circuit's heads are always in, and not counted among the m
    assert top_heads(effects, 1, always).tolist() == [[False, True, True]]
