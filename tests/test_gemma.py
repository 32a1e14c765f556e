"""Gemma 3's layout (``gemma3_text``): a norm between the attention output and the residual stream.

Exact patching is unaffected (it changes a head's output before the norm, and the model applies the norm);
every linear shortcut through the output projection is refused: first-order CMAP gives NaN, the circuit measures
patch every head exactly, and the first-order monitor and the anatomy say why they cannot run.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_tiny

from forgetlens.circuits.circuit import head_mask
from forgetlens.circuits.discover import task_splits
from forgetlens.errors import ForgetlensError
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.tasks import get_task


@pytest.fixture(scope="module")
def gemma(tokenizer):
    return make_tiny("gemma3", len(tokenizer), heads=4)


def test_the_layout_reads_heads_of_their_own_width_and_knows_the_norm(gemma, tokenizer):
    layout = HeadLayout.of(gemma)
    assert (layout.architecture, layout.n_layers, layout.n_heads, layout.d_head) == ("gemma3_text", 2, 4, 32)
    assert layout.norm_after_attention and not HeadLayout("qwen2", 2, 4, 16).norm_after_attention
    ids = tokenizer(["the cat sat on the mat and the dog"], return_tensors="pt").input_ids
    written = []
    hook = gemma.model.layers[1].self_attn.o_proj.register_forward_hook(lambda m, a, out: written.append(out))
    with torch.no_grad(), capture_heads(gemma, layout) as captured:
        gemma(input_ids=ids)
    hook.remove()
    z = layout.split(captured[1])  # [batch, pos, head, d_head]
    w = gemma.model.layers[1].self_attn.o_proj.weight.view(64, 4, 32)  # [d_model, head, d_head]
    by_hand = torch.einsum("dhk,bphk->bpd", w, z)  # the sum of every head's write, before the norm
    assert torch.allclose(by_hand, written[0], atol=1e-5)


def test_identical_models_are_exactly_zero_with_every_head_patched_exactly(gemma, tokenizer):
    layout = HeadLayout.of(gemma)
    _, evaluation = task_splits(tokenizer, get_task("ioi"), 8, seed=0)
    mask = head_mask([(0, 1), (1, 2)], layout)
    m = circuit_measurements(copy.deepcopy(gemma), layout, evaluation, mask, base=gemma, top_m=2)
    assert m.cmap_exact.all() and m.cmap_total_exact.all()  # top_m could not choose: every head exact
    assert np.all(m.cmap == 0) and np.all(m.cmap_total == 0) and np.all(m.drift == 0)
    assert np.isnan(m.cmap_estimate).all() and np.isnan(m.cmap_total_estimate).all()


def test_a_changed_head_is_seen_by_exact_patching(gemma, tokenizer):
    layout = HeadLayout.of(gemma)
    _, evaluation = task_splits(tokenizer, get_task("ioi"), 8, seed=0)
    tuned = copy.deepcopy(gemma)
    with torch.no_grad():
        tuned.model.layers[1].self_attn.o_proj.weight.view(64, 4, 32)[:, 2] *= 3.0  # head 2 of layer 1 only
    m = circuit_measurements(tuned, layout, evaluation, head_mask([(1, 2)], layout), base=gemma)
    moved = np.abs(m.cmap).mean(0)  # [layer, head]
    assert moved[1, 2] > 0 and np.count_nonzero(moved) == 1


def test_first_order_shortcuts_are_refused_with_a_reason(gemma, tokenizer):
    from forgetlens.measure.anatomy import measure_anatomy
    from forgetlens.training.monitor import CircuitMonitor

    layout = HeadLayout.of(gemma)
    with pytest.raises(ForgetlensError, match="CircuitMonitor measures first-order V\\(C0\\), which gemma3_text"):
        CircuitMonitor(gemma, tokenizer, tasks=["ioi"], circuits={"ioi": [(0, 1)]})
    _, evaluation = task_splits(tokenizer, get_task("ioi"), 8, seed=0)
    with pytest.raises(ForgetlensError, match="the anatomy chooses heads outside C0 by a first-order estimate"):
        measure_anatomy(gemma, gemma, tokenizer, layout, evaluation, head_mask([(0, 1)], layout))
