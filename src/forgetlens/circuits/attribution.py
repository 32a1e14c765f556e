"""Attribution patching of all heads at once (EAP) and its integrated-gradients variant (EAP-IG).

For a head h with output z_h (at every position), the noising effect
IE(h) = m(clean | h <- corrupt) - m(clean) is approximated to first order by

    a(h) = sum_pos (z_h(corrupt) - z_h(clean)) . dm/dz_h |_clean

which needs one clean forward (with an activation-only graph), one corrupted
forward and one backward, whatever the number of heads (Nanda 2023; Syed et
al. 2023).  EAP-IG (Hanna et al. 2024) replaces the gradient at the clean point
by its average along the straight path between clean and corrupted input
embeddings, evaluated at ``steps`` midpoints.  ``denoising`` swaps the roles
of clean and corrupted prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from forgetlens.circuits.patching import DIRECTIONS, chunks, head_outputs, run_metric
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import answer_logits, model_device
from forgetlens.models.heads import HeadLayout, capture_heads, frozen_parameters
from forgetlens.tasks.base import TaskBatch, task_metric

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def _head_gradients(
    model: PreTrainedModel, layout: HeadLayout, part: TaskBatch, embeds: torch.Tensor, metric: str
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """dm/dz for every layer at input embeddings ``embeds`` -> (grads [layer][batch, pos, head, d_head],
    z [layer, batch, pos, head, d_head], the metric m [batch])."""
    embeds = embeds.detach().requires_grad_(True)
    with capture_heads(model, layout) as captured:
        logits = answer_logits(
            model, None, part.attention_mask, part.answer_pos, inputs_embeds=embeds
        )  # [batch, vocab]
    m = task_metric(logits, part, metric)  # [batch]
    # Prompts do not interact, so the gradient of the sum gives every prompt's own gradient.
    grads = torch.autograd.grad(m.sum(), captured)
    return [layout.split(g) for g in grads], torch.stack([layout.split(z.detach()) for z in captured]), m.detach()


@dataclass
class AttributionPass:
    """Attribution scores and what the pass computed on the way, for callers that would otherwise recompute it."""

    scores: torch.Tensor  # [n_prompts, layer, head]
    receiver_metric: torch.Tensor | None  # [n_prompts]: m on the receiving prompts (plain attribution only)
    donor_outputs: list[torch.Tensor] | None  # per chunk [layer, batch, pos, head, d_head]: head outputs on the
    # donor prompts (kept only when asked), on the model's device
    donor_metric: torch.Tensor | None = None  # [n_prompts]: m on the donor prompts (when donor outputs are kept)
    receiver_outputs: list[torch.Tensor] | None = None  # per chunk, as donor_outputs, on the receiving prompts


def attribution_scores(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    *,
    metric: str,
    direction: str = "noising",
    ig_steps: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Attribution estimate of every head's patching effect, per prompt -> [n_prompts, layer, head].

    ``ig_steps = 0`` gives plain attribution patching (gradient at the receiving run);
    ``ig_steps = k > 0`` averages gradients at k midpoints of the embedding path (EAP-IG).
    """
    return attribution_pass(
        model, layout, batch, metric=metric, direction=direction, ig_steps=ig_steps, batch_size=batch_size
    ).scores


def attribution_pass(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    *,
    metric: str,
    direction: str = "noising",
    ig_steps: int = 0,
    batch_size: int = 64,
    keep_donor_outputs: bool = False,
) -> AttributionPass:
    """:func:`attribution_scores` with the receiving run's metric and (``keep_donor_outputs``, plain attribution)
    both runs' head outputs per chunk and the donor run's metric: with noising, the corrupted head outputs that
    counterfactual ablation uses and the clean ones that CMAP and drift compare."""
    if direction not in DIRECTIONS:
        raise ForgetlensError(f"unknown patching direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    if ig_steps < 0:
        raise ForgetlensError(f"ig_steps must be >= 0, got {ig_steps}")
    device = model_device(model)
    embed = model.get_input_embeddings()
    out, metrics, donors, donor_metrics, receivers = [], [], [], [], []
    with frozen_parameters(model):
        for part in chunks(batch, batch_size, device):
            receiver_ids, donor_ids = part.clean_ids, part.corrupted_ids
            if direction == "denoising":
                receiver_ids, donor_ids = donor_ids, receiver_ids
            with torch.no_grad():
                e_recv, e_donor = embed(receiver_ids), embed(donor_ids)
            if ig_steps == 0:
                grads, z_recv, m_recv = _head_gradients(model, layout, part, e_recv, metric)
                metrics.append(m_recv.cpu())
                if keep_donor_outputs:  # the donor pass with its metric (the unembedding at one position only)
                    with torch.no_grad(), capture_heads(model, layout) as captured:
                        donor_metrics.append(run_metric(model, part, metric, corrupted=direction == "noising").cpu())
                    z_donor = torch.stack([layout.split(z) for z in captured])
                    receivers.append(z_recv)
                else:
                    z_donor = head_outputs(model, layout, part, corrupted=direction == "noising")
            else:
                total: list[torch.Tensor] | None = None
                for i in range(ig_steps):
                    alpha = (i + 0.5) / ig_steps
                    grads_i, _, _ = _head_gradients(model, layout, part, e_recv + alpha * (e_donor - e_recv), metric)
                    total = grads_i if total is None else [a + b for a, b in zip(total, grads_i)]
                assert total is not None  # ig_steps >= 1
                grads = [g / ig_steps for g in total]
                z_recv = head_outputs(model, layout, part, corrupted=direction == "denoising")
                z_donor = head_outputs(model, layout, part, corrupted=direction == "noising")
            grad = torch.stack(grads)  # [layer, batch, pos, head, d_head]
            scores = ((z_donor - z_recv) * grad).sum(dim=(2, 4))  # [layer, batch, head]
            out.append(scores.permute(1, 0, 2).cpu())
            if keep_donor_outputs:
                donors.append(z_donor)
    return AttributionPass(
        scores=torch.cat(out),
        receiver_metric=torch.cat(metrics) if metrics else None,
        donor_outputs=donors if keep_donor_outputs else None,
        donor_metric=torch.cat(donor_metrics) if donor_metrics else None,
        receiver_outputs=receivers if receivers else None,
    )
