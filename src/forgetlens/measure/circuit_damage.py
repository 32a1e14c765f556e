"""Everything the comparison of a base circuit across models needs from one model on one task's evaluation prompts:
per-head effects, the circuit's faithfulness terms, and (against the base) CMAP and drift, as
:class:`~forgetlens.analysis.vulnerability.PromptMeasurements`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from forgetlens.analysis.vulnerability import PromptMeasurements
from forgetlens.circuits.attribution import attribution_pass
from forgetlens.circuits.circuit import FaithfulnessProbe, score_heads
from forgetlens.circuits.patching import chunks, run_metric
from forgetlens.measure.cmap import cmap_and_drift, to_numpy
from forgetlens.measure.first_order_cmap import BaseChunk
from forgetlens.models.forward import model_device
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import TaskBatch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def circuit_measurements(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    circuit_mask: torch.Tensor,
    method: str = "attribution",
    base: PreTrainedModel | None = None,
    *,
    metric: str,
    batch_size: int = 64,
    total_cmap: bool = True,
    top_m: int | None = None,
    base_cache: list[BaseChunk] | None = None,
) -> PromptMeasurements:
    """Everything the comparison needs from one model; ``base`` given -> also CMAP and drift against it.
    ``metric``: the task metric every measure reads, the circuit's own (``Circuit.metric``).

    ``total_cmap=False`` skips the paper's (total) CMAP.  ``top_m``: exact CMAP only for C0 and the ``top_m``
    other heads of largest first-order |effect| (None: every head).  ``base_cache``: :func:`base_chunks` of
    ``base`` on ``batch``, shared by every model measured against it.  With ``method="attribution"`` the
    attribution pass's clean and corrupted runs also give m(full), m(corrupt), the ablation source and the tuned
    head outputs, so nothing is run twice.
    """
    tuned_outputs = None
    if method == "attribution":
        scored = attribution_pass(model, layout, batch, metric=metric, batch_size=batch_size, keep_donor_outputs=True)
        ie, m_full, m_corrupt = scored.scores, scored.receiver_metric, scored.donor_metric
        assert m_full is not None and m_corrupt is not None  # the attribution pass always runs both
        probe = FaithfulnessProbe(
            model,
            layout,
            batch,
            "counterfactual",
            metric=metric,
            batch_size=batch_size,
            sources=scored.donor_outputs,
            full=m_full,
        )
        tuned_outputs = scored.receiver_outputs
    else:
        device = model_device(model)
        ie = score_heads(model, layout, batch, method, metric=metric, batch_size=batch_size)
        m_corrupt = torch.cat(
            [run_metric(model, p, metric, corrupted=True).cpu() for p in chunks(batch, batch_size, device)]
        )
        probe = FaithfulnessProbe(model, layout, batch, "counterfactual", metric=metric, batch_size=batch_size)
        m_full = probe.baseline.full
    m_circuit = probe.circuit_metric(circuit_mask)
    out = PromptMeasurements(
        ie=to_numpy(ie),
        te=to_numpy(m_full - m_corrupt),
        m_full=to_numpy(m_full),
        m_circuit=to_numpy(m_circuit),
        m_empty=to_numpy(probe.baseline.empty),
    )
    if base is not None:
        fields = cmap_and_drift(
            base,
            model,
            layout,
            batch,
            circuit_mask,
            metric=metric,
            batch_size=batch_size,
            total=total_cmap,
            top_m=top_m,
            base_cache=base_cache,
            tuned_outputs=tuned_outputs,
        )
        out = dataclasses.replace(out, **fields)
    return out
