"""Gemma 3's layout (``gemma3_text``): a norm between the attention output and the residual stream.

Every patch and gradient acts at the output projection, before that norm, so the model applies the norm itself:
exact patching is exact, identical models give exactly zero, and first-order CMAP converges to exact patching as
the change shrinks, as on Llama (the norm is inside the gradient like every later layer).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import make_tiny

from forgetlens.circuits.circuit import head_mask
from forgetlens.circuits.discover import task_splits
from forgetlens.circuits.patching import head_outputs, patch_each_head
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.measure.cross_model import local_cmap
from forgetlens.measure.first_order_cmap import base_chunks, first_order_cmap
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.tasks import get_task


@pytest.fixture(scope="module")
def gemma(tokenizer):
    return make_tiny("gemma3", len(tokenizer), heads=4)


@pytest.fixture(scope="module")
def evaluation(tokenizer):
    return task_splits(tokenizer, get_task("ioi"), 16, seed=0)[1]


def perturbed(model, eps, seed=1):
    """A copy with eps x (each tensor's std) of noise on every attention and MLP weight."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if "self_attn" in name or "mlp" in name:
                p.add_(eps * p.std() * torch.randn(p.shape, generator=g))
    return out


def test_the_layout_reads_heads_of_their_own_width(gemma, tokenizer):
    layout = HeadLayout.of(gemma)
    assert (layout.architecture, layout.n_layers, layout.n_heads, layout.d_head) == ("gemma3_text", 2, 4, 32)
    ids = tokenizer(["the cat sat on the mat and the dog"], return_tensors="pt").input_ids
    written = []
    hook = gemma.model.layers[1].self_attn.o_proj.register_forward_hook(lambda m, a, out: written.append(out))
    with torch.no_grad(), capture_heads(gemma, layout) as captured:
        gemma(input_ids=ids)
    hook.remove()
    z = layout.split(captured[1])  # [batch, pos, head, d_head]: 4 x 32 = 128 wide on a 64-wide stream
    w = gemma.model.layers[1].self_attn.o_proj.weight.view(64, 4, 32)  # [d_model, head, d_head]
    assert torch.allclose(torch.einsum("dhk,bphk->bpd", w, z), written[0], atol=1e-5)  # each head's write, by hand


def test_identical_models_are_exactly_zero(gemma, evaluation):
    layout = HeadLayout.of(gemma)
    mask = head_mask([(0, 1), (1, 2)], layout)
    m = circuit_measurements(copy.deepcopy(gemma), layout, evaluation, mask, base=gemma, top_m=2, metric="logit_diff")
    for values in (m.cmap, m.cmap_total, m.drift, m.cmap_estimate, m.cmap_total_estimate):
        assert np.all(values == 0)


def test_a_changed_head_is_seen_by_exact_patching_and_no_other(gemma, evaluation):
    layout = HeadLayout.of(gemma)
    tuned = copy.deepcopy(gemma)
    with torch.no_grad():
        tuned.model.layers[1].self_attn.o_proj.weight.view(64, 4, 32)[:, 2] *= 3.0  # head 2 of layer 1 only
    m = circuit_measurements(tuned, layout, evaluation, head_mask([(1, 2)], layout), base=gemma, metric="logit_diff")
    moved = np.abs(m.cmap).mean(0)  # [layer, head]
    assert moved[1, 2] > 0 and np.count_nonzero(moved) == 1


def test_first_order_cmap_converges_to_exact_patching_through_the_norm(gemma, evaluation):
    layout = HeadLayout.of(gemma)
    chunk = base_chunks(gemma, layout, evaluation, metric="logit_diff")[0]
    errors = {}
    for eps in (1e-1, 1e-2):
        tuned = perturbed(gemma, eps)
        z_tuned = head_outputs(tuned, layout, chunk.part)
        local, total, z1 = first_order_cmap(gemma, tuned, layout, chunk, z_tuned)
        exact = local_cmap(
            gemma, tuned, layout, chunk.part, "logit_diff", outputs=(chunk.z0, z1), baseline=chunk.metric
        )
        exact_total = patch_each_head(gemma, layout, chunk.part, z_tuned, "logit_diff", baseline=chunk.metric)
        for kind, estimate, truth in (("local", local, exact), ("total", total, exact_total)):
            e, x = estimate.mean(0).flatten(), truth.mean(0).flatten()
            errors[kind, eps] = float((e - x).norm() / x.norm())
    for kind in ("local", "total"):
        assert errors[kind, 1e-2] < 0.02  # measured: 0.007 (local), 0.006 (total)
        assert errors[kind, 1e-2] < errors[kind, 1e-1] / 5  # a first-order estimate: the relative error shrinks
        # with the change (measured: 0.060 -> 0.0066, as on a tiny Llama 0.012 -> 0.0012)


def test_a_tokenizer_that_starts_every_text_with_bos_gets_it_on_every_prompt(tokenizer):
    """Gemma's tokenizer puts ``<bos>`` first and its models need it; the others put nothing there."""
    from forgetlens.tasks import encode_examples
    from forgetlens.tasks.base import leading_special_ids

    class WithBos:  # the embedded tokenizer, starting every text with a BOS as Gemma's does
        pad_token_id = tokenizer.pad_token_id

        def __call__(self, text, add_special_tokens=True, **kwargs):
            ids = tokenizer(text, add_special_tokens=False, **kwargs)["input_ids"]
            return {"input_ids": ([7] if add_special_tokens else []) + ids}

    assert leading_special_ids(WithBos()) == [7] and leading_special_ids(tokenizer) == []
    examples = get_task("ioi").examples(4, 0)
    plain, with_bos = encode_examples(tokenizer, examples, "ioi"), encode_examples(WithBos(), examples, "ioi")
    assert (with_bos.clean_ids[:, 0] == 7).all() and (with_bos.corrupted_ids[:, 0] == 7).all()
    assert torch.equal(with_bos.clean_ids[:, 1:], plain.clean_ids) and torch.equal(
        with_bos.answer_pos, plain.answer_pos + 1
    )
    assert torch.equal(with_bos.answer_ids, plain.answer_ids)
