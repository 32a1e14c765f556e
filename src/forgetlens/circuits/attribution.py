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

import torch

from forgetlens.circuits.patching import DIRECTIONS, chunks, head_outputs
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import answer_logits, model_device
from forgetlens.models.heads import HeadLayout, capture_heads, frozen_parameters
from forgetlens.tasks.base import TaskBatch, task_metric


def _head_gradients(model, layout: HeadLayout, part: TaskBatch, embeds: torch.Tensor, metric: str
                    ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """dm/dz for every layer at input embeddings ``embeds``; returns (grads, z) each [layer][batch, pos, head, d_head]."""
    embeds = embeds.detach().requires_grad_(True)
    with capture_heads(model, layout) as captured:
        logits = answer_logits(model, None, part.attention_mask, part.answer_pos, inputs_embeds=embeds)  # [batch, vocab]
    m = task_metric(logits, part, metric)  # [batch]
    # Prompts do not interact, so the gradient of the sum gives every prompt's own gradient.
    grads = torch.autograd.grad(m.sum(), captured)
    return [layout.split(g) for g in grads], torch.stack([layout.split(z.detach()) for z in captured])


def attribution_scores(model, layout: HeadLayout, batch: TaskBatch, metric: str = "logit_diff",
                       direction: str = "noising", ig_steps: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Attribution estimate of every head's patching effect, per prompt -> [n_prompts, layer, head].

    ``ig_steps = 0`` gives plain attribution patching (gradient at the receiving run);
    ``ig_steps = k > 0`` averages gradients at k midpoints of the embedding path (EAP-IG).
    """
    if direction not in DIRECTIONS:
        raise ForgetlensError(f"unknown patching direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    if ig_steps < 0:
        raise ForgetlensError(f"ig_steps must be >= 0, got {ig_steps}")
    device = model_device(model)
    embed = model.get_input_embeddings()
    out = []
    with frozen_parameters(model):
        for part in chunks(batch, batch_size, device):
            receiver_ids, donor_ids = part.clean_ids, part.corrupted_ids
            if direction == "denoising":
                receiver_ids, donor_ids = donor_ids, receiver_ids
            with torch.no_grad():
                e_recv, e_donor = embed(receiver_ids), embed(donor_ids)
            if ig_steps == 0:
                grads, z_recv = _head_gradients(model, layout, part, e_recv, metric)
                z_donor = head_outputs(model, layout, part, corrupted=direction == "noising")
            else:
                total = None
                for i in range(ig_steps):
                    alpha = (i + 0.5) / ig_steps
                    grads_i, _ = _head_gradients(model, layout, part, e_recv + alpha * (e_donor - e_recv), metric)
                    total = grads_i if total is None else [a + b for a, b in zip(total, grads_i)]
                grads = [g / ig_steps for g in total]
                z_recv = head_outputs(model, layout, part, corrupted=direction == "denoising")
                z_donor = head_outputs(model, layout, part, corrupted=direction == "noising")
            grad = torch.stack(grads)  # [layer, batch, pos, head, d_head]
            scores = ((z_donor - z_recv) * grad).sum(dim=(2, 4))  # [layer, batch, head]
            out.append(scores.permute(1, 0, 2).cpu())
    return torch.cat(out)
