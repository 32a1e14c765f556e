"""Exact activation patching and ablation of attention heads.

Conventions (shared with ``attribution.py``):

* ``noising``: run the clean prompt and replace one head's output by its value
  on the corrupted prompt; effect IE(h) = m(clean | h <- corrupt) - m(clean).
* ``denoising``: run the corrupted prompt and restore one head's clean output;
  effect m(corrupt | h <- clean) - m(corrupt).

All functions return per-prompt values so that statistics (bootstrap CIs) can
be taken later without rerunning models.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from forgetlens.config.options import ABLATIONS
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import answer_logits, model_device, run_body
from forgetlens.models.heads import HeadLayout, capture_heads, head_hooks
from forgetlens.progress import open_task
from forgetlens.tasks.base import TaskBatch, task_metric

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


DIRECTIONS = ("noising", "denoising")


def chunks(batch: TaskBatch, batch_size: int, device: torch.device | str) -> Iterator[TaskBatch]:
    """Consecutive sub-batches of at most ``batch_size`` prompts, moved to ``device``."""
    for start in range(0, len(batch), batch_size):
        yield batch.subset(range(start, min(start + batch_size, len(batch)))).to(device)


def _inputs(batch: TaskBatch, corrupted: bool) -> torch.Tensor:
    return batch.corrupted_ids if corrupted else batch.clean_ids


@torch.no_grad()
def run_metric(model: PreTrainedModel, batch: TaskBatch, metric: str, corrupted: bool = False) -> torch.Tensor:
    """Metric of an unmodified forward pass on clean (or corrupted) prompts -> [batch], on the model's device."""
    batch = batch.to(model_device(model))
    logits = answer_logits(model, _inputs(batch, corrupted), batch.attention_mask, batch.answer_pos)
    return task_metric(logits, batch, metric)


@torch.no_grad()
def head_outputs(model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, corrupted: bool = False) -> torch.Tensor:
    """Per-head outputs of every layer -> [layer, batch, pos, head, d_head], on the model's device."""
    batch = batch.to(model_device(model))
    with capture_heads(model, layout) as captured:
        run_body(model, _inputs(batch, corrupted), batch.attention_mask)
    return torch.stack([layout.split(z.detach()) for z in captured])


@torch.no_grad()
def run_with_patch(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    patch: torch.Tensor,
    source: torch.Tensor,
    metric: str,
    corrupted: bool = False,
) -> torch.Tensor:
    """Metric when heads with ``patch[layer, head]`` True take their value from ``source``.

    patch: [layer, head] bool; source: [layer, batch, pos, head, d_head] (or broadcastable to it).
    Returns [batch].
    """

    def fn(layer: int, z: torch.Tensor):
        heads = patch[layer]
        if not bool(heads.any()):
            return None
        src = source[layer].to(device=z.device, dtype=z.dtype).expand_as(z)
        return torch.where(heads.view(1, 1, -1, 1).to(z.device), src, z)

    with head_hooks(model, layout, fn):
        return run_metric(model, batch, metric, corrupted=corrupted)


def patch_each_head(
    model: PreTrainedModel,
    layout: HeadLayout,
    part: TaskBatch,
    source: torch.Tensor,
    metric: str,
    corrupted: bool = False,
    heads: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Metric change when each head alone takes its value from ``source`` -> [batch, layer, head].

    source: [layer, batch, pos, head, d_head]; the receiving run is clean (or corrupted) ``part``.
    ``heads``: [layer, head] bool, patch only these (others stay 0); None = every head.  ``baseline``: the
    receiving run's metric [batch], when the caller has it.
    """
    if baseline is None:
        baseline = run_metric(model, part, metric, corrupted=corrupted)
    effects = torch.zeros(len(part), layout.n_layers, layout.n_heads, dtype=baseline.dtype)
    n = layout.n_total if heads is None else int(heads.sum())
    with open_task("exact patching", n, "heads", announce=False) as shown:
        for layer in range(layout.n_layers):
            for head in range(layout.n_heads):
                if heads is not None and not bool(heads[layer, head]):
                    continue
                patch = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
                patch[layer, head] = True
                patched = run_with_patch(model, layout, part, patch, source, metric, corrupted=corrupted)
                effects[:, layer, head] = (patched - baseline).cpu()
                shown.advance()
    return effects


def exact_head_effects(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    *,
    metric: str,
    direction: str = "noising",
    batch_size: int = 64,
) -> torch.Tensor:
    """Exact per-head patching effect for every prompt -> [n_prompts, layer, head]."""
    if direction not in DIRECTIONS:
        raise ForgetlensError(f"unknown patching direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    device = model_device(model)
    receiver_is_corrupt = direction == "denoising"
    out = []
    for part in chunks(batch, batch_size, device):
        source = head_outputs(model, layout, part, corrupted=not receiver_is_corrupt)
        out.append(patch_each_head(model, layout, part, source, metric, corrupted=receiver_is_corrupt))
    return torch.cat(out)


@torch.no_grad()
def ablation_source(
    model: PreTrainedModel, layout: HeadLayout, part: TaskBatch, ablation: str, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """Values that replace ablated heads on ``part``'s clean prompts -> [layer, batch|1, pos, head, d_head].

    ``counterfactual``: the head's output on the corrupted prompt; ``mean``: ``reference`` (see
    :func:`mean_head_outputs`); ``zero``: zeros.
    """
    if ablation == "counterfactual":
        return head_outputs(model, layout, part, corrupted=True)
    if ablation == "mean":
        if reference is None:
            raise ForgetlensError("mean ablation needs reference activations (mean_head_outputs)")
        return reference[:, :, : part.clean_ids.shape[1]]
    if ablation == "zero":
        return torch.zeros(layout.n_layers, 1, part.clean_ids.shape[1], layout.n_heads, layout.d_head)
    raise ForgetlensError(f"unknown ablation {ablation!r}; expected one of {', '.join(ABLATIONS)}")


@torch.no_grad()
def mean_head_outputs(
    model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, batch_size: int = 64
) -> torch.Tensor:
    """Per-position mean of each head's clean output over prompts -> [layer, 1, pos, head, d_head].

    Positions past a prompt's end do not count towards the mean (per-position mean ablation,
    as in Prakash et al. 2024).
    """
    device = model_device(model)
    width = batch.clean_ids.shape[1]
    dtype = next(model.parameters()).dtype
    total = torch.zeros(layout.n_layers, width, layout.n_heads, layout.d_head, device=device, dtype=dtype)
    count = torch.zeros(width, device=device, dtype=dtype)
    for part in chunks(batch, batch_size, device):
        acts = head_outputs(model, layout, part)  # [layer, batch, pos, head, d_head]
        mask = part.attention_mask.to(dtype)  # [batch, pos]
        w = part.clean_ids.shape[1]
        total[:, :w] += torch.einsum("lbphd,bp->lphd", acts, mask)
        count[:w] += mask.sum(0)
    return (total / count.clamp(min=1).view(1, -1, 1, 1)).unsqueeze(1)


def circuit_metric(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    keep: torch.Tensor,
    ablation: str,
    *,
    metric: str,
    batch_size: int = 64,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Metric on clean prompts with every head outside ``keep`` [layer, head] ablated -> [n_prompts]."""
    device = model_device(model)
    if ablation == "mean" and reference is None:
        reference = mean_head_outputs(model, layout, batch, batch_size)
    out = []
    for part in chunks(batch, batch_size, device):
        source = ablation_source(model, layout, part, ablation, reference)
        out.append(run_with_patch(model, layout, part, ~keep.bool(), source, metric).cpu())
    return torch.cat(out)
