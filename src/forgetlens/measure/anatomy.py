"""Where a tuned model's change on a prior task lives: the circuit, other heads, MLPs, the readout, and what the
model says instead.

Every measure is an intervention on one model, run over the same prompts and read out at the answer position
on every metric at once (``tasks.base.METRICS``; the whole-vocabulary ones see probability that moves to tokens
the distractor never was):

* the **whole change**: the tuned model's own forward pass against the base model's, m_θ(x) - m_0(x);
* **induced** parts, run on the base model: it becomes the tuned model in one respect and the metric change
  from m_0 is the part of the whole change that respect carries:
    - ``joint_total/C0`` and ``joint_total/all_heads``: the outputs of the base circuit's heads (of every head)
      replaced, all at once, by their values in the tuned model's own forward pass (everything upstream of a
      head changes what it reads, so this is the circuit's total change);
    - ``joint_local/C0``: the circuit's heads computed by the tuned model's weights (its attention input norm,
      query/key/value and output-projection slices) from the base model's running stream, all at once: the
      change that lies in those heads' own weights;
    - ``mlp_total``: every MLP's output replaced by its value in the tuned forward pass;
    - ``weights/GROUP``: a group of the tuned model's weights copied into the base model (attention, MLPs,
      embeddings, unembedding, final norm; the five partition every parameter), and, for attention and MLPs,
      blocks of layers found by halving where the effect concentrates (a search: its cost grows with the
      logarithm of the depth, not the depth);
* **restored** parts, run on the tuned model with a group of the base model's weights copied back: the part of
  the whole change that goes away (``restore/GROUP``);
* **heads outside the circuit**: every head's total change to first order (one base gradient), the largest
  few patched exactly;
* **format**: what the tuned model's top-1 token is on prompts it gets wrong (end of turn, end of line,
  punctuation, another word of the prompt, other), how probability moved between those kinds, and the answer's
  rank among the prompt's own tokens.

This module only runs models and returns per-prompt arrays (:class:`Anatomy`); ``analysis/anatomy.py`` turns them
into shares with paired-bootstrap intervals.  Joint local over all heads is the same intervention as the
attention-weights hybrid, and identical models give exactly zero everywhere (both tested).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from forgetlens.circuits.patching import chunks
from forgetlens.errors import ForgetlensError
from forgetlens.measure.cross_model import head_writes, registered_hooks
from forgetlens.measure.first_order_cmap import base_chunk, first_order_cmap
from forgetlens.models.forward import answer_logits, model_device
from forgetlens.models.heads import HeadLayout, capture_heads, head_hooks, unwrap
from forgetlens.tasks.base import METRICS, TaskBatch, task_metric

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


WEIGHT_GROUPS = ("attention", "mlp", "embeddings", "unembedding", "final_norm", "other")
"""Parameter groups that partition a model's weights (``other``: anything the rules below do not place; empty on
the supported architectures)."""
TOKEN_KINDS = ("answer", "end_of_turn", "end_of_line", "punctuation", "prompt_word", "other")
"""What a predicted token is, in this order of precedence (the answer counts as the answer, not as a prompt
word)."""
_LAYER = re.compile(r"\.(?:layers|h)\.(\d+)\.(.+)$")


def weight_group(name: str) -> tuple[str, int | None]:
    """(group, layer or None) of a parameter of a Llama/Qwen2/Mistral or GPT-2 model, by its name."""
    m = _LAYER.search(name)
    if m:
        rest = m.group(2)
        if rest.startswith(("self_attn.", "attn.", "input_layernorm", "ln_1")):
            return "attention", int(m.group(1))
        if rest.startswith(("mlp.", "post_attention_layernorm", "ln_2")):
            return "mlp", int(m.group(1))
        return "other", int(m.group(1))
    if "embed_tokens" in name or re.search(r"(^|\.)(wte|wpe)\.", name):
        return "embeddings", None
    if name.startswith("lm_head"):
        return "unembedding", None
    if re.search(r"(^|\.)(norm|ln_f)\.", name):
        return "final_norm", None
    return "other", None


def parameter_names(model: PreTrainedModel, group: str, layers: range | None = None) -> list[str]:
    """Names of ``model``'s parameters in ``group`` (and, for per-layer groups, in ``layers``)."""
    out = []
    for name, _ in unwrap(model).named_parameters():
        g, layer = weight_group(name)
        if g == group and (layers is None or layer is None or layer in layers):
            out.append(name)
    return out


@contextmanager
def swapped_weights(model: PreTrainedModel, donor: PreTrainedModel, names: list[str]) -> Iterator[None]:
    """``model`` with the parameters ``names`` copied from ``donor`` (same architecture), restored on exit."""
    mine, theirs = dict(unwrap(model).named_parameters()), dict(unwrap(donor).named_parameters())
    saved = {n: mine[n].detach().clone() for n in names}
    try:
        with torch.no_grad():
            for n in names:
                mine[n].copy_(theirs[n])
        yield
    finally:
        with torch.no_grad():
            for n in names:
                mine[n].copy_(saved[n])


def _blocks(model: PreTrainedModel) -> list[torch.nn.Module]:
    inner = unwrap(model)
    for path in ("model.layers", "transformer.h"):
        obj = inner
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return list(obj)
        except AttributeError:
            continue
    raise ForgetlensError(f"{type(inner).__name__}: no list of transformer blocks found")


def _mlps(model: PreTrainedModel) -> list[torch.nn.Module]:
    return [block.mlp for block in _blocks(model)]


@dataclass
class TunedPass:
    """What the tuned model's own forward pass leaves for the interventions on the base model (one chunk)."""

    z: list[torch.Tensor]  # per layer [batch, pos, n_heads * d_head]: head outputs
    mlp_out: list[torch.Tensor]  # per layer [batch, pos, d_model]: MLP outputs


@contextmanager
def heads_from(layout: HeadLayout, model: PreTrainedModel, mask: torch.Tensor, tuned: TunedPass) -> Iterator[None]:
    """``model`` (the base) with heads ``mask`` [layer, head] taking their outputs from the tuned forward pass."""

    def fn(layer: int, z: torch.Tensor):
        if not bool(mask[layer].any()):
            return None
        src = layout.split(tuned.z[layer]).to(z.dtype)
        return torch.where(mask[layer].view(1, 1, -1, 1).to(z.device), src, z)

    with head_hooks(model, layout, fn):
        yield


@contextmanager
def mlps_from(model: PreTrainedModel, tuned: TunedPass, layers: range) -> Iterator[None]:
    """``model`` (the base) with the MLPs of ``layers`` outputting their values in the tuned forward pass."""
    regs = [
        lambda m=mlp, l=l: m.register_forward_hook(lambda mod, args, out: tuned.mlp_out[l].to(out.dtype))
        for l, mlp in enumerate(_mlps(model))
        if l in layers
    ]
    with registered_hooks(regs):
        yield


@contextmanager
def heads_computed_by(
    layout: HeadLayout, base: PreTrainedModel, tuned: PreTrainedModel, mask: torch.Tensor
) -> Iterator[None]:
    """``base`` with heads ``mask`` [layer, head] computed by ``tuned``'s attention input norm and attention from
    the base model's running stream, and written through the tuned output-projection slices (head-local, all
    heads of the mask at once)."""
    residual: dict[int, torch.Tensor] = {}
    tuned_z: dict[int, torch.Tensor] = {}
    base_attn, tuned_attn = layout.attentions(base), layout.attentions(tuned)
    base_proj, tuned_proj = layout.projections(base), layout.projections(tuned)

    def keep_residual(layer):
        def hook(module, args):
            residual[layer] = args[0]

        return hook

    def run_tuned(layer):
        def hook(module, args, kwargs):
            norm, attn = tuned_attn[layer]
            hidden = norm(residual[layer])
            new_args, new_kwargs = ((hidden,) + tuple(args[1:]), dict(kwargs)) if args else ((), dict(kwargs))
            if not args:
                new_kwargs["hidden_states"] = hidden
            captured: list[torch.Tensor] = []
            with registered_hooks(
                [lambda: tuned_proj[layer].register_forward_pre_hook(lambda m, a: captured.append(a[0]))]
            ):
                attn(*new_args, **new_kwargs)
            tuned_z[layer] = layout.split(captured[0])

        return hook

    busy = [False]  # head_writes may call the projection itself (GPT-2's Conv1D, LoRA): not through this hook

    def rewrite(layer):
        heads = mask[layer].to(torch.bool)

        def hook(module, args, out):
            if busy[0]:
                return None
            busy[0] = True
            try:
                z0 = layout.split(args[0])  # [batch, pos, head, d_head]
                tuned_write = head_writes(tuned_proj[layer], tuned_z[layer], layout)  # [head, batch, pos, d_model]
                delta = tuned_write - head_writes(base_proj[layer], z0, layout)
            finally:
                busy[0] = False
            keep = heads.view(-1, 1, 1, 1).to(out.device)
            return out + (delta * keep).sum(0).to(out.dtype)  # [batch, pos, d_model]

        return hook

    regs = []
    for layer in range(layout.n_layers):
        if not bool(mask[layer].any()):
            continue
        norm, attn = base_attn[layer]
        regs.append(lambda n=norm, l=layer: n.register_forward_pre_hook(keep_residual(l)))
        regs.append(lambda a=attn, l=layer: a.register_forward_pre_hook(run_tuned(l), with_kwargs=True))
        regs.append(lambda p=base_proj[layer], l=layer: p.register_forward_hook(rewrite(l)))
    with registered_hooks(regs):
        yield


# --- the readout -------------------------------------------------------------------------------------------------
def readout(logits: torch.Tensor, part: TaskBatch) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` and ``correct`` (top-1 is the answer; for set-scored tasks, more mass on
    valid than invalid answers) from answer-position logits [batch, vocab] -> {name: [batch]}."""
    out = {m: task_metric(logits, part, m) for m in METRICS}
    if part.option_ids is None:
        out["correct"] = (logits.argmax(-1) == part.answer_ids).float()
    else:
        out["correct"] = (out["prob_diff"] > 0).float()
    return out


READOUTS = METRICS + ("correct",)


@dataclass
class Anatomy:
    """Per-prompt readouts of every intervention on one (base, tuned, task), and what was needed to read them."""

    base: dict[str, np.ndarray]  # readout name -> [prompt]
    tuned: dict[str, np.ndarray]
    induced: dict[str, dict[str, np.ndarray]]  # intervention -> readout -> [prompt], on the base model
    restored: dict[str, dict[str, np.ndarray]]  # group -> readout -> [prompt], on the tuned model
    blocks: dict[str, list[list[int]]]  # group -> the layer blocks the search evaluated, [first, last + 1]
    head_estimates: np.ndarray  # [prompt, layer, head]: first-order total change of each head (``metric``)
    head_exact: dict[tuple[int, int], np.ndarray]  # (layer, head) -> [prompt]: exact total change of ``metric``
    format: dict = field(default_factory=dict)  # see :func:`format_readout`
    forward_passes: float = 0.0
    """Cost in forward-equivalents over the prompt set (a gradient counts 2, a tuned-attention recompute 0.5)."""
    metric: str = "logp_answer"
    tied_embeddings: bool = False


def _swap(model: PreTrainedModel, donor, names: list[str]) -> Callable[[int], AbstractContextManager]:
    """The intervention "``names`` copied from ``donor`` into ``model``", the same for every chunk."""
    return lambda i: swapped_weights(model, donor, names)


def _stack(parts: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    return {k: torch.cat([p[k] for p in parts]).double().cpu().numpy() for k in parts[0]}


class _Runner:
    """Runs one intervention over every chunk and counts forward passes."""

    def __init__(
        self, base: PreTrainedModel, tuned: PreTrainedModel, layout: HeadLayout, evaluation: TaskBatch, batch_size: int
    ):
        self.base, self.tuned, self.layout = base, tuned, layout
        self.parts = list(chunks(evaluation, batch_size, model_device(base)))
        self.forwards = 0.0

    def run(
        self,
        model: PreTrainedModel,
        intervention: Callable[[int], AbstractContextManager] | None = None,
        cost: float = 1.0,
    ) -> dict[str, np.ndarray]:
        """Readouts of ``model`` with ``intervention(chunk_index)`` (a context manager, or None) active."""
        out = []
        for i, part in enumerate(self.parts):
            with ExitStack() as stack, torch.no_grad():
                if intervention is not None:
                    stack.enter_context(intervention(i))
                logits = answer_logits(model, part.clean_ids, part.attention_mask, part.answer_pos)
            out.append(readout(logits, part))
        self.forwards += cost
        return _stack(out)


def _tuned_passes(
    tuned: PreTrainedModel, layout: HeadLayout, parts: list[TaskBatch]
) -> tuple[list[TunedPass], list[dict], list]:
    """The tuned model's own forward on every chunk: its head and MLP outputs, readouts and logits."""
    passes, reads, logits_all = [], [], []
    for part in parts:
        mlp_out: list[torch.Tensor] = []
        regs = [
            lambda m=mlp, kept=mlp_out: m.register_forward_hook(lambda mod, a, out: kept.append(out.detach()))
            for mlp in _mlps(tuned)
        ]
        with torch.no_grad(), capture_heads(tuned, layout) as z, registered_hooks(regs):
            logits = answer_logits(tuned, part.clean_ids, part.attention_mask, part.answer_pos)
        passes.append(TunedPass(z=[t.detach() for t in z], mlp_out=mlp_out))
        reads.append(readout(logits, part))
        logits_all.append(logits.float())
    return passes, reads, logits_all


def measure_anatomy(
    base: PreTrainedModel,
    tuned: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    layout: HeadLayout,
    evaluation: TaskBatch,
    circuit_mask: torch.Tensor,
    metric: str = "logp_answer",
    min_block: int = 4,
    n_exact_heads: int = 4,
    batch_size: int = 64,
) -> Anatomy:
    """Every intervention of the module docstring for ``tuned`` against ``base`` on ``evaluation``'s prompts.

    ``circuit_mask``: [layer, head] bool, the base circuit C0.  ``metric`` steers the two searches (which layer
    block to refine, which heads outside C0 to patch exactly); every readout is recorded whatever it is.
    """
    if metric not in METRICS:
        raise ForgetlensError(f"anatomy metric {metric!r}: expected one of {', '.join(METRICS)}")
    run = _Runner(base, tuned, layout, evaluation, batch_size)
    all_heads = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    base_logits = []
    base_reads = []
    for part in run.parts:
        with torch.no_grad():
            logits = answer_logits(base, part.clean_ids, part.attention_mask, part.answer_pos)
        base_logits.append(logits.float())
        base_reads.append(readout(logits, part))
    passes, tuned_reads, tuned_logits = _tuned_passes(tuned, layout, run.parts)
    run.forwards += 2
    induced: dict[str, dict[str, np.ndarray]] = {
        "joint_total/C0": run.run(base, lambda i: heads_from(layout, base, circuit_mask, passes[i])),
        "joint_total/all_heads": run.run(base, lambda i: heads_from(layout, base, all_heads, passes[i])),
        "joint_local/C0": run.run(base, lambda i: heads_computed_by(layout, base, tuned, circuit_mask), cost=1.5),
        "mlp_total": run.run(base, lambda i: mlps_from(base, passes[i], range(layout.n_layers))),
    }
    restored: dict[str, dict[str, np.ndarray]] = {}
    groups = [g for g in WEIGHT_GROUPS if parameter_names(base, g)]
    for g in groups:
        names = parameter_names(base, g)
        induced[f"weights/{g}"] = run.run(base, _swap(base, tuned, names))
        restored[g] = run.run(tuned, _swap(tuned, base, names))
    base_np = _stack(base_reads)
    blocks: dict[str, list[list[int]]] = {}
    for g in ("attention", "mlp"):
        block, blocks[g] = range(layout.n_layers), []
        while len(block) > min_block:
            half = (len(block) + 1) // 2
            halves = [block[:half], block[half:]]
            sizes = []
            for h in halves:
                names = parameter_names(base, g, h)
                key = f"weights/{g}@{h.start}-{h.stop - 1}"
                induced[key] = run.run(base, _swap(base, tuned, names))
                blocks[g].append([h.start, h.stop])
                sizes.append(abs(float((induced[key][metric] - base_np[metric]).mean())))
            block = halves[int(np.argmax(sizes))]
    estimates, exact = _outside_heads(run, base, layout, circuit_mask, passes, base_np[metric], metric, n_exact_heads)
    return Anatomy(
        base=base_np,
        tuned=_stack(tuned_reads),
        induced=induced,
        restored=restored,
        blocks=blocks,
        head_estimates=estimates,
        head_exact=exact,
        format=format_readout(tokenizer, run.parts, torch.cat(base_logits), torch.cat(tuned_logits)),
        forward_passes=run.forwards,
        metric=metric,
        tied_embeddings=not parameter_names(base, "unembedding"),
    )


def _outside_heads(
    run, base: PreTrainedModel, layout, circuit_mask, passes, baseline, metric, n_exact
) -> tuple[np.ndarray, dict]:
    """First-order total change of every head (one base forward and gradient per chunk), and the exact total
    change of the ``n_exact`` heads outside C0 of largest |mean estimate|."""
    estimates = []
    for i, part in enumerate(run.parts):
        chunk = base_chunk(base, layout, part, metric)
        tuned_z = torch.stack([layout.split(z) for z in passes[i].z])  # [layer, batch, pos, head, d_head]
        _, total, _ = first_order_cmap(base, run.tuned, layout, chunk, tuned_z)
        estimates.append(total)
    run.forwards += 3.5  # forward + backward, and the tuned attention recomputed by first_order_cmap
    est = torch.cat(estimates).double().numpy()  # [prompt, layer, head]
    size = np.abs(est.mean(0))
    size[circuit_mask.numpy().astype(bool)] = -1.0
    exact = {}
    for flat in np.argsort(-size.ravel())[: max(0, n_exact)]:
        if size.ravel()[flat] < 0:
            break
        layer, head = divmod(int(flat), layout.n_heads)
        one = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
        one[layer, head] = True
        patched = run.run(base, lambda i, m=one: heads_from(layout, base, m, passes[i]))
        exact[(layer, head)] = patched[metric] - baseline
    return est, exact


# --- format: what the model says instead ---------------------------------------------------------------------------
def token_kinds(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> torch.Tensor:
    """[kind, vocab] bool for the prompt-independent kinds: end of turn (special tokens), end of line (decodes to
    text holding a newline) and punctuation (decodes to punctuation and spaces only)."""
    kinds = torch.zeros(3, vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    punct = set(string.punctuation)
    for i in range(min(vocab_size, len(tokenizer))):
        if i in special:
            kinds[0, i] = True
            continue
        text = tokenizer.decode([i])
        if "\n" in text:
            kinds[1, i] = True
        elif text.strip() and all(c in punct for c in text.strip()):
            kinds[2, i] = True
    return kinds


def format_readout(
    tokenizer: PreTrainedTokenizerBase, parts: list[TaskBatch], base_logits: torch.Tensor, tuned_logits: torch.Tensor
) -> dict:
    """What each model's top-1 token is on the prompts it gets wrong, by :data:`TOKEN_KINDS`; the probability
    mass on each kind, per prompt, for both models; the answer's rank among the prompt's own tokens.

    base_logits, tuned_logits: [prompt, vocab] at the answer position.  Set-scored tasks count a valid answer as
    the answer.
    """
    vocab = base_logits.shape[-1]
    fixed = token_kinds(tokenizer, vocab)  # [3, vocab]
    models = {"base": base_logits, "tuned": tuned_logits}
    probs = {name: logits.softmax(-1) for name, logits in models.items()}  # [prompt, vocab]
    mass: dict[str, list[torch.Tensor]] = {name: [] for name in models}  # per prompt [kind]
    top_kind: dict[str, list[int]] = {name: [] for name in models}
    ranks: dict[str, list[int]] = {name: [] for name in models}
    row = 0
    for part in parts:
        part = part.to("cpu")
        for j in range(len(part)):
            answer = torch.zeros(vocab, dtype=torch.bool)
            if part.option_ids is None:
                answer[part.answer_ids[j]] = True
            else:
                assert part.option_sign is not None
                answer[part.option_ids[part.option_sign[j] > 0]] = True
            prompt = torch.zeros(vocab, dtype=torch.bool)
            prompt[part.clean_ids[j, : int(part.answer_pos[j]) + 1]] = True
            taken = torch.zeros(vocab, dtype=torch.bool)
            exclusive = []  # [kind] masks over the vocabulary, in order of precedence, each token in one
            for k in (answer, fixed[0], fixed[1], fixed[2], prompt):
                exclusive.append(k & ~taken)
                taken |= k
            exclusive.append(~taken)
            kinds = torch.stack(exclusive)  # [kind, vocab]
            words = (prompt & ~fixed.any(0)) | answer  # the prompt's own word tokens, and the answer
            for name, logits in models.items():
                mass[name].append((kinds.to(probs[name].dtype) @ probs[name][row]).double())
                top_kind[name].append(int(kinds[:, int(logits[row].argmax())].float().argmax()))
                ranks[name].append(int((logits[row][words] > logits[row][answer].max()).sum()) + 1)
            row += 1
    out: dict = {"kinds": list(TOKEN_KINDS)}
    for name in models:
        out[name] = {
            "mass": torch.stack(mass[name]).numpy(),  # [prompt, kind]
            "top1_kind": np.asarray(top_kind[name]),  # [prompt], index into kinds
            "answer_rank_among_prompt_words": np.asarray(ranks[name]),  # [prompt], 1 = above every prompt word
        }
    return out
