"""Every head's CMAP to first order, from one base-model gradient; exact patching kept for the heads that matter.

Exact cross-model patching (``cross_model.py``) runs the base model once per head: n_heads forward passes per
prompt chunk (270 on SmolLM2-135M, 576 on Qwen2.5-3B).  Patching head h changes only h's write to the residual
stream, by Δ_h, so to first order

    CMAP(h; x) = m_0(x | write_h + Δ_h) - m_0(x)  ≈  Σ_pos g_l(x) · Δ_h(x)

where g_l is the gradient of the base model's metric with respect to the output of layer l's attention output
projection (attribution patching, Nanda 2023, applied to CMAP).  The two CMAP forms differ only in Δ_h:

* head-local: Δ_h = W_O^θ[:, h] z̃_θ(h) - W_O^0[:, h] z_0(h), with z̃_θ the tuned block's norm and attention
  applied to the base residual stream (as ``cross_model.local_cmap`` patches it);
* total: Δ_h = W_O^0[:, h] (z_θ(h) - z_0(h)), with z_θ from the tuned model's own forward pass.

The base side (z_0, the residual stream, the attention calls and g) is one forward and one activation-only
backward per chunk, computed once per prompt set (:func:`base_chunks`) and shared by every tuned model; each
tuned model then adds one attention call per layer.  ``measure/circuit_damage.circuit_measurements`` replaces
the estimate by exact patching on the base circuit and the top-M heads by estimated |effect|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from forgetlens.circuits.patching import chunks
from forgetlens.measure.cross_model import head_writes, registered_hooks, tuned_heads_on_base
from forgetlens.models.forward import answer_logits, model_device
from forgetlens.models.heads import HeadLayout, frozen_parameters
from forgetlens.tasks.base import TaskBatch, task_metric

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


@dataclass
class BaseChunk:
    """What first-order and exact CMAP need from the base model on one chunk of prompts."""

    part: TaskBatch  # the chunk, on the model's device
    z0: torch.Tensor  # [layer, batch, pos, head, d_head]: base head outputs
    residuals: list[torch.Tensor]  # per layer [batch, pos, d_model]: the stream entering the attention's norm
    calls: list[tuple[tuple, dict]]  # per layer: the attention module's call (args, kwargs)
    grads: list[torch.Tensor]  # per layer [batch, pos, d_model]: d m_0 / d(attention output projection's output)
    metric: torch.Tensor  # [batch]: m_0 on the clean prompts
    metric_name: str = ""  # which metric m is (``tasks.base.METRICS``): its gradient is ``grads``


def base_chunk(base: PreTrainedModel, layout: HeadLayout, part: TaskBatch, metric: str) -> BaseChunk:
    """One forward and one activation-only backward of ``base`` on ``part`` -> :class:`BaseChunk`."""
    residuals: list[torch.Tensor] = []
    calls: list[tuple[tuple, dict]] = []
    z0: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def keep_residual(module, args):
        residuals.append(args[0].detach())

    def keep_call(module, args, kwargs):
        calls.append((args, dict(kwargs)))

    def keep_projection(module, args, out):
        z0.append(layout.split(args[0].detach()))
        outputs.append(out)

    regs = []
    for (norm, attn), proj in zip(layout.attentions(base), layout.projections(base)):
        regs.append(lambda n=norm: n.register_forward_pre_hook(keep_residual))
        regs.append(lambda a=attn: a.register_forward_pre_hook(keep_call, with_kwargs=True))
        regs.append(lambda p=proj: p.register_forward_hook(keep_projection))
    with frozen_parameters(base), torch.enable_grad(), registered_hooks(regs):
        embeds = base.get_input_embeddings()(part.clean_ids).detach().requires_grad_(True)
        logits = answer_logits(base, None, part.attention_mask, part.answer_pos, inputs_embeds=embeds)
        m = task_metric(logits, part, metric)  # [batch]
        grads = torch.autograd.grad(m.sum(), outputs)  # prompts do not interact: each row its own gradient
    return BaseChunk(
        part=part,
        z0=torch.stack(z0),
        residuals=residuals,
        calls=calls,
        grads=[g.detach() for g in grads],
        metric=m.detach(),
        metric_name=metric,
    )


def base_chunks(
    base: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, *, metric: str, batch_size: int = 64
) -> list[BaseChunk]:
    """:func:`base_chunk` for every chunk of ``batch`` (the same chunks as every other per-prompt measurement)."""
    return [base_chunk(base, layout, part, metric) for part in chunks(batch, batch_size, model_device(base))]


@torch.no_grad()
def first_order_cmap(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    layout: HeadLayout,
    chunk: BaseChunk,
    tuned_z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """First-order head-local CMAP and (with ``tuned_z``, the tuned model's own head outputs
    [layer, batch, pos, head, d_head]) total CMAP of every head on one chunk.

    Returns (local [batch, layer, head], total [batch, layer, head] or None, z̃_θ [layer, batch, pos, head,
    d_head], the tuned heads on the base residual stream, for exact patching afterwards).  The gradient is taken at
    the output projection's output, so a norm between it and the residual stream (Gemma 3's post-attention norm)
    is inside the gradient like every later layer: the estimate is first-order there too.
    """
    z1 = tuned_heads_on_base(tuned, layout, chunk.residuals, chunk.calls)
    n = len(chunk.part)
    local = torch.zeros(n, layout.n_layers, layout.n_heads)
    total = torch.zeros(n, layout.n_layers, layout.n_heads) if tuned_z is not None else None
    base_proj, tuned_proj = layout.projections(base), layout.projections(tuned)
    for layer in range(layout.n_layers):
        g = chunk.grads[layer]  # [batch, pos, d_model]
        base_write = head_writes(base_proj[layer], chunk.z0[layer], layout)  # [head, batch, pos, d_model]
        delta = head_writes(tuned_proj[layer], z1[layer], layout) - base_write
        local[:, layer] = torch.einsum("hbpd,bpd->bh", delta.to(g.dtype), g).cpu()
        if tuned_z is not None and total is not None:
            delta = head_writes(base_proj[layer], tuned_z[layer], layout) - base_write
            total[:, layer] = torch.einsum("hbpd,bpd->bh", delta.to(g.dtype), g).cpu()
    return local, total, z1


def top_heads(effects: torch.Tensor, m: int, always: torch.Tensor) -> torch.Tensor:
    """[layer, head] bool: ``always`` plus the ``m`` other heads of largest |mean effect|.

    effects: [n_prompts, layer, head] per-prompt (estimated) effects.
    """
    size = effects.mean(0).abs() if effects.shape[0] else torch.zeros(always.shape)
    size = size.masked_fill(always.bool(), -1.0).flatten()
    chosen = always.bool().clone().flatten()
    m = min(m, int((~chosen).sum()))
    if m > 0:
        chosen[size.topk(m).indices] = True
    return chosen.view(always.shape)
