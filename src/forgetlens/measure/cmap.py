"""CMAP of every head in one call: the first-order estimate for every head (``first_order_cmap.py``), exact
cross-model patching (``cross_model.py``) for the base circuit and the heads the estimate ranks highest, and
representation drift, as per-prompt arrays (definitions in ``analysis/vulnerability.py``).

Cost.  With ``top_m`` set, CMAP is estimated to first order for every head (``measure/first_order_cmap.py``)
and patched exactly only for C0 and the ``top_m`` other heads of largest estimated |effect|; ``cmap`` holds the
exact value there and the estimate elsewhere, ``cmap_exact`` says which, and ``cmap_estimate`` keeps every
estimate.  V(C0) and its DCV use C0's heads only, so they come from exact values.  ``top_m=None`` patches every
head exactly (n_heads forward passes per chunk): the reference the estimate is checked against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from forgetlens.circuits.patching import head_outputs, patch_each_head
from forgetlens.measure.cross_model import local_cmap
from forgetlens.measure.first_order_cmap import BaseChunk, base_chunks, first_order_cmap, top_heads
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import TaskBatch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the CPU."""
    return t.detach().double().cpu().numpy()


@torch.no_grad()
def cmap_and_drift(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    circuit_mask: torch.Tensor,
    *,
    metric: str,
    batch_size: int = 64,
    total: bool = True,
    top_m: int | None = None,
    base_cache: list[BaseChunk] | None = None,
    tuned_outputs: list[torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """Per-prompt CMAP (head-local; total unless ``total`` is False), their first-order estimates, which heads
    were patched exactly, and representation drift (see the module docstring) -> {PromptMeasurements field: array},
    per-prompt arrays [prompt, layer, head]; ``circuit_mask``: [layer, head] bool.

    ``base_cache``: :func:`base_chunks` of ``base`` on ``batch`` (computed here when None); ``tuned_outputs``: the
    tuned model's clean head outputs per chunk, when the caller has them.
    """
    chunks_0 = (
        base_cache if base_cache is not None else base_chunks(base, layout, batch, metric=metric, batch_size=batch_size)
    )
    if any(chunk.metric_name != metric for chunk in chunks_0):
        raise ValueError(f"base_cache holds the gradient of another metric than {metric!r}")
    sizes = [len(chunk.part) for chunk in chunks_0]
    if sum(sizes) != len(batch) or (tuned_outputs is not None and sizes != [z.shape[1] for z in tuned_outputs]):
        raise ValueError("base_cache and tuned_outputs must chunk the same prompts with the same batch_size")
    estimates, totals, drift, z_local, z_tuned = [], [], [], [], []
    for i, chunk in enumerate(chunks_0):
        acts1 = tuned_outputs[i] if tuned_outputs is not None else head_outputs(tuned, layout, chunk.part)
        local_est, total_est, z1 = first_order_cmap(base, tuned, layout, chunk, acts1 if total else None)
        estimates.append(local_est)
        totals.append(total_est)
        z_local.append(z1)
        z_tuned.append(acts1)
        mask = chunk.part.attention_mask.to(chunk.z0.dtype)  # [batch, pos]
        u = chunk.z0 / chunk.z0.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        v = acts1 / acts1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        d = 0.5 * ((u - v) ** 2).sum(-1)  # [layer, batch, pos, head] = 1 - cos
        drift.append(torch.einsum("lbph,bp->blh", d, mask) / mask.sum(1).view(-1, 1, 1))
    everyone = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    estimate = torch.cat(estimates)  # [n, layer, head]
    exact_set = everyone if top_m is None else top_heads(estimate, top_m, circuit_mask.cpu())
    exact = torch.cat(
        [
            local_cmap(
                base, tuned, layout, chunk.part, metric, outputs=(chunk.z0, z1), heads=exact_set, baseline=chunk.metric
            )
            for chunk, z1 in zip(chunks_0, z_local)
        ]
    )
    out = {
        "cmap": to_numpy(torch.where(exact_set, exact, estimate)),
        "cmap_estimate": to_numpy(estimate),
        "cmap_exact": exact_set.numpy(),
        "drift": to_numpy(torch.cat(drift)),
    }
    if total:
        estimate = torch.cat(totals)
        exact_set = everyone if top_m is None else top_heads(estimate, top_m, circuit_mask.cpu())
        exact = torch.cat(
            [
                patch_each_head(base, layout, chunk.part, acts1, metric, heads=exact_set, baseline=chunk.metric)
                for chunk, acts1 in zip(chunks_0, z_tuned)
            ]
        )
        out.update(
            cmap_total=to_numpy(torch.where(exact_set, exact, estimate)),
            cmap_total_estimate=to_numpy(estimate),
            cmap_total_exact=exact_set.numpy(),
        )
    return out
