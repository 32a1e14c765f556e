"""Circuit selection and faithfulness.

A circuit is a set of heads.  Its normalised faithfulness on a prompt set is

    f(C) = (m(C) - m(empty)) / (m(full) - m(empty))

where m(C) is the mean metric on clean prompts with every head outside C
ablated (ratio of means, not mean of ratios), m(full) the unmodified model and
m(empty) the model with every head ablated.  Heads are ranked by |score|; the
faithfulness curve is f over circuit sizes k, and a circuit is either the top-k
heads or the smallest top-k reaching a faithfulness target.

Cost follows the circuit, not the head count: :class:`FaithfulnessProbe` computes each prompt chunk's ablation
source, m(full) and m(empty) once, so every further circuit size costs one patched forward pass, and
:func:`search_k` finds the size by bisection over the ranked heads (f(0) = 0 and f(all) = 1 by definition), at
most ceil(log2(n_heads + 1)) sizes, instead of evaluating every size (:func:`faithfulness_curve`).  Bisection
assumes the curve crosses the target once; where it does not, it returns a crossing, not necessarily the first
(the full curve, ``DiscoveryConfig.full_curve``, shows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.patching import (
    ablation_source,
    chunks,
    circuit_metric,
    exact_head_effects,
    mean_head_outputs,
    run_metric,
    run_with_patch,
)
from forgetlens.config.options import DISCOVERY_METHODS
from forgetlens.errors import ForgetlensError
from forgetlens.models.forward import model_device
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import TaskBatch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel


class HeadScorer(Protocol):
    """A way to score every head on every prompt: its effect on ``metric`` when the head is noised."""

    def __call__(
        self, model: PreTrainedModel, layout: HeadLayout, batch: TaskBatch, metric: str, ig_steps: int, batch_size: int
    ) -> torch.Tensor:  # [prompt, layer, head]
        ...


def _attribution(model, layout, batch, metric, ig_steps, batch_size) -> torch.Tensor:  # [prompt, layer, head]
    return attribution_scores(model, layout, batch, metric=metric, batch_size=batch_size)


def _integrated_gradients(model, layout, batch, metric, ig_steps, batch_size) -> torch.Tensor:
    return attribution_scores(model, layout, batch, metric=metric, ig_steps=ig_steps, batch_size=batch_size)


def _exact(model, layout, batch, metric, ig_steps, batch_size) -> torch.Tensor:
    return exact_head_effects(model, layout, batch, metric=metric, batch_size=batch_size)


SCORERS: dict[str, HeadScorer] = {"attribution": _attribution, "ig": _integrated_gradients, "exact": _exact}
"""The scoring methods, by ``DiscoveryConfig.method``: first-order attribution patching and its integrated-gradients
form (``circuits/attribution.py``), exact activation patching (``circuits/patching.py``).  ``dbm`` finds a circuit
without per-head scores (``circuits/dbm.py``).  Adding a scoring method: its function in a file of its own, an
entry here and its name in ``config.options.ScoringMethod``."""


def score_heads(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    method: str = "attribution",
    *,
    metric: str,
    ig_steps: int = 8,
    batch_size: int = 64,
) -> torch.Tensor:
    """Per-prompt head scores (estimated or exact noising effects) -> [n_prompts, layer, head]."""
    scorer = SCORERS.get(method)
    if scorer is None:
        raise ForgetlensError(f"unknown discovery method {method!r}; expected one of {', '.join(DISCOVERY_METHODS)}")
    return scorer(model, layout, batch, metric, ig_steps, batch_size)


def rank_heads(scores: torch.Tensor) -> list[tuple[int, int]]:
    """Heads ordered by |mean score|, largest first; scores: [layer, head]. Ties break by index."""
    n_heads = scores.shape[1]
    flat = scores.abs().flatten()
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    return [(i // n_heads, i % n_heads) for i in order]


def head_mask(heads: list[tuple[int, int]], layout: HeadLayout) -> torch.Tensor:
    """[layer, head] bool mask with the given heads set."""
    mask = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask


@dataclass
class FaithfulnessBaseline:
    """Per-prompt metric of the full model and of the fully ablated model on one prompt set."""

    full: torch.Tensor  # [n_prompts]
    empty: torch.Tensor  # [n_prompts]
    reference: torch.Tensor | None = None  # mean-ablation values, when used


def faithfulness_baseline(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    ablation: str,
    metric: str,
    batch_size: int = 64,
    reference: torch.Tensor | None = None,
) -> FaithfulnessBaseline:
    """m(full) and m(empty) per prompt, each [prompt] (``reference``: [layer, 1, pos, head, d_head] mean outputs)."""
    if ablation == "mean" and reference is None:
        reference = mean_head_outputs(model, layout, batch, batch_size)
    device = model_device(model)
    full = torch.cat([run_metric(model, part, metric).cpu() for part in chunks(batch, batch_size, device)])
    none = torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool)
    empty = circuit_metric(
        model, layout, batch, none, ablation, metric=metric, batch_size=batch_size, reference=reference
    )
    return FaithfulnessBaseline(full, empty, reference)


def normalised_faithfulness(m_circuit: torch.Tensor, base: FaithfulnessBaseline) -> float:
    """(mean m(C) - mean m(empty)) / (mean m(full) - mean m(empty)); ``m_circuit``: [prompt]."""
    denom = float(base.full.mean() - base.empty.mean())
    if abs(denom) < 1e-12:
        return float("nan")
    return float(m_circuit.mean() - base.empty.mean()) / denom


def faithfulness_curve(
    model: PreTrainedModel,
    layout: HeadLayout,
    batch: TaskBatch,
    order: list[tuple[int, int]],
    ks: list[int],
    ablation: str = "counterfactual",
    *,
    metric: str,
    batch_size: int = 64,
) -> tuple[list[dict], FaithfulnessBaseline]:
    """f(top-k) for each k in ``ks`` -> ([{k, faithfulness}], baseline).  Recomputes the ablation source for
    every k: the slow, obvious reference that :class:`FaithfulnessProbe` is checked against."""
    base = faithfulness_baseline(model, layout, batch, ablation, metric, batch_size)
    curve = []
    for k in ks:
        keep = head_mask(order[:k], layout)
        m = circuit_metric(
            model, layout, batch, keep, ablation, metric=metric, batch_size=batch_size, reference=base.reference
        )
        curve.append({"k": k, "faithfulness": normalised_faithfulness(m, base)})
    return curve, base


class FaithfulnessProbe:
    """f(C) for many circuits C on one prompt set, one patched forward pass per circuit.

    Each chunk's ablation source (the corrupted head outputs for counterfactual ablation), m(full) and m(empty)
    are computed once.  ``sources`` and ``full``: the per-chunk corrupted head outputs and the clean metric when
    the caller already has them (an attribution pass over the same prompts, same ``batch_size``).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        layout: HeadLayout,
        batch: TaskBatch,
        ablation: str = "counterfactual",
        *,
        metric: str,
        batch_size: int = 64,
        sources: list[torch.Tensor] | None = None,
        full: torch.Tensor | None = None,
    ):
        self.model, self.layout, self.metric = model, layout, metric
        device = model_device(model)
        self.parts = list(chunks(batch, batch_size, device))
        reference = mean_head_outputs(model, layout, batch, batch_size) if ablation == "mean" else None
        if sources is None or ablation != "counterfactual":
            sources = [ablation_source(model, layout, part, ablation, reference) for part in self.parts]
        self.sources = sources  # per chunk [layer, batch|1, pos, head, d_head]
        if full is None:
            full = torch.cat([run_metric(model, part, metric).cpu() for part in self.parts])
        self.evaluations = 0
        empty = self.circuit_metric(torch.zeros(layout.n_layers, layout.n_heads, dtype=torch.bool))
        self.baseline = FaithfulnessBaseline(full, empty, reference)

    def circuit_metric(self, keep: torch.Tensor) -> torch.Tensor:
        """Metric with every head outside ``keep`` [layer, head] ablated -> [n_prompts]."""
        self.evaluations += 1
        return torch.cat(
            [
                run_with_patch(self.model, self.layout, part, ~keep.bool(), source, self.metric).cpu()
                for part, source in zip(self.parts, self.sources)
            ]
        )

    def faithfulness(self, heads: list[tuple[int, int]]) -> float:
        """Normalised faithfulness of the circuit ``heads``."""
        if len(heads) == self.layout.n_total:
            return 1.0
        if not heads:
            return 0.0
        return normalised_faithfulness(self.circuit_metric(head_mask(heads, self.layout)), self.baseline)

    def curve(self, order: list[tuple[int, int]], ks: list[int]) -> list[dict]:
        """f(top-k) for every k in ``ks``."""
        return [{"k": k, "faithfulness": self.faithfulness(order[:k])} for k in ks]


def search_k(probe: FaithfulnessProbe, order: list[tuple[int, int]], target: float) -> tuple[int, list[dict]]:
    """The circuit size by bisection over top-k (module docstring) -> (k, the evaluated points, sorted by k).

    Keeps lo < hi with f(top-lo) < target <= f(top-hi), starting from lo = 0 (f = 0) and hi = all heads (f = 1).
    """
    lo, hi = 0, len(order)
    points = {lo: 0.0, hi: 1.0}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        points[mid] = probe.faithfulness(order[:mid])
        if points[mid] >= target:
            hi = mid
        else:
            lo = mid
    return hi, [{"k": k, "faithfulness": points[k]} for k in sorted(points)]


def default_ks(n_total: int) -> list[int]:
    """Every k up to 64 heads, then a geometric grid (about 40 points) up to all heads."""
    if n_total <= 64:
        return list(range(n_total + 1))
    ks = set(range(0, 33))
    k = 32.0
    while k < n_total:
        ks.add(int(round(k)))
        k *= 1.15
    ks.add(n_total)
    return sorted(ks)


def choose_k(curve: list[dict], k: int | None, target: float) -> int:
    """``k`` itself, or the smallest k on the curve whose faithfulness reaches ``target`` (largest k if none)."""
    if k is not None:
        return k
    for point in curve:
        if point["faithfulness"] >= target:
            return point["k"]
    return curve[-1]["k"]


@dataclass
class Circuit:
    """A discovered circuit and the evidence for it."""

    task: str
    method: str
    metric: str
    ablation: str
    scores: torch.Tensor  # [layer, head], mean over discovery prompts
    per_prompt: torch.Tensor  # [n_prompts, layer, head]
    heads: list[tuple[int, int]]
    faithfulness: float
    curve: list[dict] = field(default_factory=list)
    dbm: Any = None  # circuits.dbm.DBMResult of a DBM circuit (not stored by save_circuit)

    @property
    def k(self) -> int:
        return len(self.heads)


CIRCUIT_FIELDS = {"task": str, "method": str, "metric": str, "ablation": str, "faithfulness": float, "curve": list}
"""A stored circuit's metadata fields and their JSON types (``scores`` and ``per_prompt`` are its tensors)."""


def save_circuit(path: Path | str, circuit: Circuit) -> None:
    """Write ``circuit`` as one safetensors file (its two tensors, the rest as JSON metadata), atomically."""
    from forgetlens.artefacts import save_tensors

    metadata = {name: getattr(circuit, name) for name in CIRCUIT_FIELDS}
    metadata["heads"] = [list(h) for h in circuit.heads]
    save_tensors(path, {"scores": circuit.scores, "per_prompt": circuit.per_prompt}, metadata)


def check_heads(heads: list, path: Path | str, n_layers: int, n_heads: int) -> list:
    """``heads`` read from ``path`` if it lists [layer, head] pairs of a model of ``n_layers`` x ``n_heads``
    heads, else one ForgetlensError naming the file."""
    from forgetlens.errors import ForgetlensError

    if not all(
        isinstance(h, list)
        and len(h) == 2
        and all(isinstance(i, int) for i in h)
        and 0 <= h[0] < n_layers
        and 0 <= h[1] < n_heads
        for h in heads
    ):
        raise ForgetlensError(f"{path}: field 'heads' should list [layer, head] pairs of this model")
    return heads


def load_circuit(path: Path | str, n_layers: int, n_heads: int) -> Circuit:
    """A circuit written by :func:`save_circuit` for a model of ``n_layers`` x ``n_heads`` heads; any field
    missing, of the wrong type or shape is one ForgetlensError naming the file (nothing in it can run code)."""
    from forgetlens.artefacts import load_tensors, record_field
    from forgetlens.errors import ForgetlensError

    tensors, meta = load_tensors(path)
    for name in ("scores", "per_prompt"):
        if name not in tensors:
            raise ForgetlensError(f"{path}: missing tensor '{name}'")
    scores, per_prompt = tensors["scores"], tensors["per_prompt"]
    if tuple(scores.shape) != (n_layers, n_heads) or tuple(per_prompt.shape[1:]) != (n_layers, n_heads):
        raise ForgetlensError(
            f"{path}: tensors of shape {tuple(scores.shape)} and {tuple(per_prompt.shape)} do not fit a model of "
            f"{n_layers} layers x {n_heads} heads"
        )
    fields = {name: record_field(meta, name, path, kind) for name, kind in CIRCUIT_FIELDS.items()}
    heads = check_heads(record_field(meta, "heads", path, list), path, n_layers, n_heads)
    return Circuit(scores=scores, per_prompt=per_prompt, heads=[(h[0], h[1]) for h in heads], **fields)
