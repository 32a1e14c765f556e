"""Differentiable binary masking (DBM): a head-level circuit found by optimising one mask per head jointly.

Attribution and exact patching score each head alone and keep the top ones; DBM asks which *set* of heads does
the job together. Every head h gets a mask m_h = sigmoid(logit_h / tau) and its output is mixed

    a~_h = (1 - w_h) a_h + w_h s_h          w_h = m_h (``flip``)  or  1 - m_h (``keep``)

where a_h is the head's output in the running forward pass and s_h its source value: the corrupted
(counterfactual) prompt's output for ``flip``, the ablation value of ``DiscoveryConfig.ablation`` for ``keep``.
The logits minimise, by Adam over random prompt batches while tau is annealed geometrically,

    -log p(target | x, a~) + sparsity * sum_h m_h

with the corrupted prompt's answer as the target for ``flip`` (the paper's objective, arXiv 2605.28860: the
smallest set of heads whose counterfactual values carry the counterfactual answer) and the clean answer for
``keep``. The circuit is {h : m_h > threshold} at the final temperature.

Fast path (``positions="last"``, the paper's): when heads are mixed only at each prompt's last token, every
earlier position computes exactly what the clean run computes, whatever the masks. :class:`LastTokenPatcher`
runs those positions once per prompt and keeps their keys and values; a step then runs one token per prompt
against that cache, and only the masks need gradients (the model is frozen). :class:`AllPositionsPatcher` mixes
heads at every position with a full forward per step (the slow, obvious form; the two agree when the source
differs only at the last position, which the tests check).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from forgetlens.circuits.patching import ablation_source, chunks, head_outputs, mean_head_outputs
from forgetlens.config.options import DBMConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import _unembeds_directly, model_device
from forgetlens.models.heads import HeadLayout, frozen_parameters, head_hooks
from forgetlens.tasks.base import TaskBatch, task_metric

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


def _mixer(weight: torch.Tensor | None, source: torch.Tensor, n_heads: int):
    """A ``head_hooks`` function moving each head's output a share ``weight`` ([layer, head] or [rows, layer,
    head]) of the way to ``source[layer]`` ([rows, pos|1, head, d_head]); None leaves the run clean."""

    def mix(layer: int, z: torch.Tensor):  # z: [rows, pos, head, d_head]
        if weight is None:
            return None
        w = weight[layer] if weight.dim() == 2 else weight[:, layer]
        w = w.to(device=z.device, dtype=z.dtype).view(-1, 1, n_heads, 1)
        return z + w * (source[layer].to(z.dtype) - z)

    return mix


def _source_kind(objective: str, ablation: str) -> str:
    """What replaces a head's output: the corrupted prompt's for ``flip``, the ablation's for ``keep``."""
    return "counterfactual" if objective == "flip" else ablation


class LastTokenPatcher:
    """Logits at each prompt's last token with heads mixed there only; earlier positions computed once.

    Prompts are re-aligned to end in the same column (left padding, explicit position ids), so one cache holds
    every prompt's earlier positions and any subset of rows can be run against it.
    """

    def __init__(self, model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, source: str, batch_size: int = 64):
        if int(batch.answer_pos.min()) < 1:
            raise ForgetlensError(f"task {batch.task}: DBM at the last position needs prompts of 2 tokens or more")
        self.model, self.layout, self.batch = model, layout, batch
        device = model_device(model)
        n, width = len(batch), int(batch.answer_pos.max()) + 1
        lengths = batch.answer_pos + 1  # [n]
        self.ids = torch.zeros(n, width, dtype=torch.long)  # [n, width], each prompt ending in the last column
        self.mask = torch.zeros(n, width, dtype=torch.long)
        self.positions = torch.zeros(n, width, dtype=torch.long)
        for i, length in enumerate(lengths.tolist()):
            self.ids[i, width - length :] = batch.clean_ids[i, :length]
            self.mask[i, width - length :] = 1
            self.positions[i, width - length :] = torch.arange(length)
        self.ids, self.mask, self.positions = self.ids.to(device), self.mask.to(device), self.positions.to(device)
        self.body = model.base_model if _unembeds_directly(model) else None
        keys: list[list[torch.Tensor]] = [[] for _ in range(layout.n_layers)]
        values: list[list[torch.Tensor]] = [[] for _ in range(layout.n_layers)]
        with torch.no_grad():
            for start in range(0, n, batch_size):
                rows = slice(start, min(start + batch_size, n))
                out = (self.body or model)(
                    input_ids=self.ids[rows, :-1],
                    attention_mask=self.mask[rows, :-1],
                    position_ids=self.positions[rows, :-1],
                    use_cache=True,
                )
                for layer, cached in enumerate(out.past_key_values.layers):
                    keys[layer].append(cached.keys)
                    values[layer].append(cached.values)
        self.keys = [torch.cat(k) for k in keys]  # per layer [n, kv_head, width - 1, d_head]
        self.values = [torch.cat(v) for v in values]
        self.source = last_token_source(model, layout, batch, source, batch_size)  # [layer, n, head, d_head]
        self.forwards = 0.0  # forward passes over all n prompts' tokens, counted in prompt-widths

    def logits(self, rows: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Last-token logits [rows, vocab] with head h's output moved a share ``weight[layer, head]`` (or
        ``[rows, layer, head]``) of the way to its source; None = the clean run."""
        from transformers import DynamicCache

        device = self.ids.device
        rows = rows.to(device)
        cache = DynamicCache(config=self.model.config)
        for layer in range(self.layout.n_layers):
            cache.update(self.keys[layer][rows], self.values[layer][rows], layer)
        source = self.source[:, rows.cpu()].unsqueeze(2).to(device)  # [layer, rows, 1, head, d_head]
        kwargs = dict(
            input_ids=self.ids[rows, -1:],
            attention_mask=self.mask[rows],
            position_ids=self.positions[rows, -1:],
            past_key_values=cache,
            use_cache=True,
        )
        with head_hooks(self.model, self.layout, _mixer(weight, source, self.layout.n_heads)):
            if self.body is not None:
                hidden = self.body(**kwargs).last_hidden_state[:, -1]  # [rows, d_model]
                logits = self.model.get_output_embeddings()(hidden)
            else:
                logits = self.model(**kwargs).logits[:, -1]
        self.forwards += len(rows) / (len(self.batch) * self.ids.shape[1])
        return logits  # [rows, vocab]


class AllPositionsPatcher:
    """Logits at the answer position with heads mixed at every position: a full forward per call."""

    def __init__(self, model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, source: str, batch_size: int = 64):
        self.model, self.layout, self.batch = model, layout, batch
        device = model_device(model)
        reference = mean_head_outputs(model, layout, batch, batch_size) if source == "mean" else None
        parts = [  # each [layer, rows, pos, head, d_head]
            ablation_source(model, layout, part, source, reference).expand(-1, len(part), -1, -1, -1).cpu()
            for part in chunks(batch, batch_size, device)
        ]
        width = batch.clean_ids.shape[1]
        self.source = torch.cat(  # [layer, n, pos, head, d_head]
            [torch.nn.functional.pad(p, (0, 0, 0, 0, 0, width - p.shape[2])) for p in parts], dim=1
        )
        self.forwards = 0.0

    def logits(self, rows: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Answer-position logits [rows, vocab] with every position's heads mixed by ``weight`` ([layer, head]
        or [rows, layer, head]); None = the clean run."""
        from forgetlens.models.forward import answer_logits

        part = self.batch.subset(rows.cpu()).to(model_device(self.model))
        source = self.source[:, rows.cpu(), : part.clean_ids.shape[1]].to(part.clean_ids.device)
        with head_hooks(self.model, self.layout, _mixer(weight, source, self.layout.n_heads)):
            logits = answer_logits(self.model, part.clean_ids, part.attention_mask, part.answer_pos)
        self.forwards += len(rows) / len(self.batch)
        return logits


@torch.no_grad()
def last_token_source(
    model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, source: str, batch_size: int = 64
) -> torch.Tensor:
    """Each head's source value at each prompt's last token -> [layer, n, head, d_head] (on the CPU)."""
    n = len(batch)
    if source == "zero":
        return torch.zeros(layout.n_layers, n, layout.n_heads, layout.d_head)
    device = model_device(model)
    if source == "mean":
        reference = mean_head_outputs(model, layout, batch, batch_size)[:, 0]  # [layer, pos, head, d_head]
        return reference[:, batch.answer_pos.to(reference.device)].cpu()
    if source != "counterfactual":
        raise ForgetlensError(f"unknown DBM source {source!r}; expected counterfactual, mean or zero")
    out = []
    for part in chunks(batch, batch_size, device):
        outputs = head_outputs(model, layout, part, corrupted=True)  # [layer, rows, pos, head, d_head]
        out.append(outputs[:, torch.arange(len(part), device=device), part.answer_pos].cpu())
    return torch.cat(out, dim=1)


def make_patcher(
    model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, cfg: DBMConfig, ablation: str, batch_size: int = 64
):
    """The patcher for ``cfg.positions`` with the source of ``cfg.objective`` (``ablation`` for ``keep``)."""
    kind = LastTokenPatcher if cfg.positions == "last" else AllPositionsPatcher
    return kind(model, layout, batch, _source_kind(cfg.objective, ablation), batch_size)


def target_logp(logits: torch.Tensor, batch: TaskBatch, rows: torch.Tensor, objective: str) -> torch.Tensor:
    """log p(target) per row [rows]: the corrupted prompt's answer for ``flip``, the clean answer (or answer
    set) for ``keep``."""
    part = batch.subset(rows.cpu()).to(logits.device)
    if objective == "flip":
        return logits.float().log_softmax(-1)[torch.arange(len(part), device=logits.device), part.distractor_ids]
    return task_metric(logits, part, "logp_answer")


MaskPatcher = LastTokenPatcher | AllPositionsPatcher
"""Either patcher: the masked forward that DBM optimises."""


@dataclass
class DBMResult:
    """The masks DBM ended with and how it got there."""

    masks: torch.Tensor  # [layer, head], m_h at the final temperature
    logits: torch.Tensor  # [layer, head], the optimised mask logits
    heads: list[tuple[int, int]]  # {h : m_h > threshold}, by layer then head
    loss_curve: list[dict]  # {step, tau, loss, logp, mask_sum} every tenth step and the last
    forward_equivalents: float  # forward passes over the prompts' tokens the optimisation cost
    seconds: float
    objective_faithfulness: float = math.nan  # the circuit's share of the objective's full effect (see dbm_circuit)


def optimise_masks(patcher: MaskPatcher, cfg: DBMConfig) -> DBMResult:
    """Run DBM on ``patcher``'s prompts (see the module docstring)."""
    layout, batch = patcher.layout, patcher.batch
    device = model_device(patcher.model)
    mask_logits = torch.full((layout.n_layers, layout.n_heads), float(cfg.init_logit), requires_grad=True)
    optimiser = torch.optim.Adam([mask_logits], lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    n, size = len(batch), min(cfg.batch_size, len(batch))
    ratio = cfg.tau_end / cfg.tau_start
    curve = []
    start = time.perf_counter()
    with frozen_parameters(patcher.model):
        for step in range(cfg.steps):
            tau = cfg.tau_start * ratio ** (step / max(cfg.steps - 1, 1))
            masks = torch.sigmoid(mask_logits / tau)  # [layer, head]
            rows = torch.randperm(n, generator=generator)[:size]
            weight = masks if cfg.objective == "flip" else 1 - masks
            logp = target_logp(patcher.logits(rows, weight.to(device)), batch, rows, cfg.objective)
            loss = -logp.mean().cpu() + cfg.sparsity * masks.sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 10 == 0 or step == cfg.steps - 1:
                curve.append(
                    {
                        "step": step,
                        "tau": tau,
                        "loss": float(loss.detach()),
                        "logp": float(logp.detach().mean()),
                        "mask_sum": float(masks.detach().sum()),
                    }
                )
    final = torch.sigmoid(mask_logits.detach() / cfg.tau_end)
    heads = [(int(l), int(h)) for l, h in (final > cfg.threshold).nonzero().tolist()]
    # a backward costs about two forwards: 3x each step's forward share
    return DBMResult(final, mask_logits.detach(), heads, curve, 3 * patcher.forwards, time.perf_counter() - start)


@torch.no_grad()
def head_necessity_sufficiency(
    patcher: MaskPatcher, heads: list[tuple[int, int]], objective: str = "keep"
) -> dict[tuple[int, int], dict[str, float]]:
    """Per head of ``heads``: necessity, the mean drop in log p(clean answer) when that head alone takes its
    source value; and sufficiency, the share of the full model's log p(clean answer) above the all-sources run
    that the head alone restores, (m({h}) - m(none)) / (m(full) - m(none)).  ``patcher``'s source is what a
    removed head takes (``keep``'s source); both use the patcher's positions."""
    layout, batch = patcher.layout, patcher.batch
    rows = torch.arange(len(batch))
    device = model_device(patcher.model)

    def logp(weight: torch.Tensor | None) -> float:
        return float(target_logp(patcher.logits(rows, weight), batch, rows, objective).mean())

    full = logp(None)
    none = logp(torch.ones(layout.n_layers, layout.n_heads, device=device))
    out = {}
    for layer, head in heads:
        one = torch.zeros(layout.n_layers, layout.n_heads, device=device)
        one[layer, head] = 1.0
        alone = 1.0 - one
        denominator = full - none
        out[(layer, head)] = {
            "necessity": full - logp(one),
            "sufficiency": (logp(alone) - none) / denominator if abs(denominator) > 1e-12 else math.nan,
        }
    return out


def flip_faithfulness(patcher: MaskPatcher, heads: list[tuple[int, int]]) -> float:
    """Share of the all-heads patch's effect on log p(corrupted answer) that patching ``heads`` alone gives:
    (m(C) - m(none)) / (m(all) - m(none)) on ``patcher``'s prompts (its source the corrupted prompt's)."""
    layout, batch = patcher.layout, patcher.batch
    rows = torch.arange(len(batch))
    device = model_device(patcher.model)
    weight = torch.zeros(layout.n_layers, layout.n_heads, device=device)
    for layer, head in heads:
        weight[layer, head] = 1.0
    with torch.no_grad():
        values = [
            float(target_logp(patcher.logits(rows, w), batch, rows, "flip").mean())
            for w in (None, weight, torch.ones_like(weight))
        ]
    none, circuit, every = values
    return (circuit - none) / (every - none) if abs(every - none) > 1e-12 else math.nan
