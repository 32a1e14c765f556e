"""Loss terms that keep a fine-tune near its base model, added to SFT's or RL's own loss.

* :class:`CircuitPreservation` (``sft-preserve``, ``rl-preserve``): lam * mean over prompts and positions of
  sum_{h in heads} ||a_theta(h) - a_0(h)||^2, a = the head's output at the o_proj input, on a fixed set of
  prior-task prompts whose base activations are computed once.
* :class:`Replay` (``replay``): weight * next-token loss on prior-task documents, as if they were mixed into the
  batch.
* :class:`KLToBase` (``sft-kl``): coef * KL(base || theta) over the SFT batch's completion tokens.

Each is called as ``term(model, inputs, step) -> scalar tensor`` from the trainer's ``compute_loss``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forgetlens.analysis.runs import pair_label
from forgetlens.artefacts import read_json
from forgetlens.circuits.patching import head_outputs
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import FinetuneConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import model_device, run_body
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.tasks.base import PriorTask, TaskBatch, encode_examples
from forgetlens.utils import first_line, right_pad, short_repr

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _tasks(names: list[str] | None, cfg: FinetuneConfig) -> list[PriorTask]:
    """``names``, else the run's ``prior_tasks``, else the default set."""
    from forgetlens.tasks.registry import chosen_task_names, get_task

    return [get_task(t) for t in chosen_task_names(names, cfg.prior_tasks, model=cfg.model)]


def protected_heads(
    base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layout: HeadLayout, cfg: FinetuneConfig
) -> dict[str, torch.Tensor]:
    """{task: [layer, head] bool mask} of the heads ``preserve.heads`` selects for each protected task."""
    from forgetlens.circuits.circuit import head_mask
    from forgetlens.circuits.discover import discover_circuit
    from forgetlens.config.options import DiscoveryConfig

    p = cfg.preserve
    out = {}
    for task in _tasks(p.tasks, cfg):
        if p.heads == "all":
            out[task.name] = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
        elif p.heads == "circuit":
            circuit = discover_circuit(base, tokenizer, task, DiscoveryConfig(n_examples=p.discovery_examples))
            out[task.name] = head_mask(circuit.heads, layout)
        else:
            out[task.name] = _top_dcv_heads(Path(str(p.dcv_results)), task.name, p.top_k, layout)
    return out


def _top_dcv_heads(path: Path, task: str, k: int, layout: HeadLayout) -> torch.Tensor:
    """The ``k`` heads of largest DCV (V_cmap SFT - RL) at the last step of ``path``'s ``task``."""
    try:
        dcv = read_json(path)["tasks"][task]["dcv"]
        pair = max(dcv, key=lambda p: step if (step := pair_label(p).step) is not None else -1)
        values = torch.tensor(dcv[pair]["v_cmap"]["value"])  # [layer, head]
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise ForgetlensError(
            f"preserve.dcv_results {path}: no per-head DCV for task {task} "
            f"({type(exc).__name__}: {short_repr(first_line(exc))}); expected a `forgetlens run` results.json"
        ) from None
    if tuple(values.shape) != (layout.n_layers, layout.n_heads):
        raise ForgetlensError(
            f"preserve.dcv_results {path}: DCV of shape {tuple(values.shape)} does not match the "
            f"model's {layout.n_layers} x {layout.n_heads} heads"
        )
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[values.flatten().argsort(descending=True)[:k]] = True
    return mask.view_as(values)


class CircuitPreservation:
    """lam * E_prompts,positions sum_{h in heads} ||a_theta(h) - a_0(h)||^2 on fixed prior-task prompts."""

    name = "preserve"

    def __init__(
        self, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layout: HeadLayout, cfg: FinetuneConfig
    ):
        p = cfg.preserve
        self.lam, self.per_step, self.layout = p.lam, p.prompts_per_step, layout
        masks = protected_heads(base, tokenizer, layout, cfg)
        examples, heads = [], []
        for task in _tasks(p.tasks, cfg):
            mine = task.examples(p.n_prompts, cfg.seed + 31)
            encode_examples(tokenizer, mine, task.name)  # a task this tokenizer cannot render fails here, named
            examples += mine
            heads += [masks[task.name]] * p.n_prompts
        self.prompts: TaskBatch = encode_examples(tokenizer, examples, "preserve")
        self.heads = torch.stack(heads)  # [prompt, layer, head]: what each prompt protects
        order = random.Random(cfg.seed + 37).sample(range(len(self.prompts)), len(self.prompts))
        self.order = torch.tensor(order)
        with torch.no_grad():
            self.base_acts = head_outputs(base, layout, self.prompts).transpose(0, 1)  # [prompt, layer, pos, head, d]

    def __call__(self, model: PreTrainedModel, inputs, step: int) -> torch.Tensor:
        n = len(self.prompts)
        idx = self.order[[(step * self.per_step + i) % n for i in range(self.per_step)]]
        part = self.prompts.subset(idx.tolist())
        device = model_device(model)
        part = part.to(device)
        with capture_heads(model, self.layout) as captured:
            run_body(model, part.clean_ids, part.attention_mask)
        acts = torch.stack([self.layout.split(z) for z in captured[: self.layout.n_layers]], 1)  # [b, L, P, H, D]
        base = self.base_acts[idx, :, : acts.shape[2]].to(device=device, dtype=acts.dtype)
        sq = ((acts - base) ** 2).sum(-1)  # [b, L, P, H]
        mask = part.attention_mask.to(sq.dtype)[:, None, :, None] * self.heads[idx].to(device)[:, :, None, :]
        return self.lam * (sq * mask).sum() / part.attention_mask.sum()


class Replay:
    """weight * next-token loss on prior-task documents (a fixed pool, taken in turn)."""

    name = "replay"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, cfg: FinetuneConfig, pool_size: int = 512):
        r = cfg.replay
        rng = random.Random(cfg.seed + 41)
        tasks = _tasks(r.tasks, cfg)
        docs = [tasks[i % len(tasks)].document(rng) for i in range(pool_size)]
        self.weight, self.per_step = r.weight, r.documents_per_step
        self.ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
        self.pad = tokenizer.pad_token_id

    def __call__(self, model: PreTrainedModel, inputs, step: int) -> torch.Tensor:
        rows = [self.ids[(step * self.per_step + i) % len(self.ids)] for i in range(self.per_step)]
        ids, mask = right_pad(rows, self.pad)  # [batch, pos]
        labels = ids.masked_fill(mask == 0, -100)
        device = model_device(model)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device), use_cache=False)
        return self.weight * out.loss


class KLToBase:
    """coef * mean over completion tokens of KL(base || theta) on the SFT batch."""

    name = "kl_to_base"

    def __init__(self, base: PreTrainedModel, cfg: FinetuneConfig):
        self.base, self.coef = base, cfg.kl_coef
        self.base.eval()
        for param in self.base.parameters():
            param.requires_grad_(False)

    def __call__(self, model: PreTrainedModel, inputs, step: int) -> torch.Tensor:
        labels = inputs["labels"]  # [batch, pos], -100 outside the completion
        predicts = labels[:, 1:] != -100  # position t predicts token t + 1
        with torch.no_grad():
            logp0 = (
                self.base(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), use_cache=False)
                .logits[:, :-1]
                .float()
                .log_softmax(-1)
            )
        # TRL's SFT loss runs a fused LM head that builds no logits, so theta's come from a forward of its own
        logp = (
            model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), use_cache=False)
            .logits[:, :-1]
            .float()
            .log_softmax(-1)
        )
        kl = (logp0.exp() * (logp0 - logp)).sum(-1)  # [batch, pos - 1]
        return self.coef * (kl * predicts).sum() / predicts.sum().clamp_min(1)


def build_regularizers(
    cfg: FinetuneConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base_loader: Callable[[], PreTrainedModel],
) -> list:
    """The loss term ``cfg.method`` adds (``config/methods.py``; ``base_loader()`` gives a frozen copy of the base
    model)."""
    term = finetune_method(cfg.method).regularizer
    if term == "preserve":
        return [CircuitPreservation(model, tokenizer, HeadLayout.of(model), cfg)]  # model is still the base here
    if term == "replay":
        return [Replay(tokenizer, cfg)]
    if term == "kl_to_base":
        return [KLToBase(base_loader(), cfg)]
    return []
