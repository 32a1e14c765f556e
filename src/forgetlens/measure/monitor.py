"""``CircuitMonitor``: a transformers/TRL ``TrainerCallback`` that watches base circuits during training.

Every ``every`` optimizer steps, on a small fixed set of prompts per prior task, it measures

* faithfulness retention R = F_theta(C0) / F_0(C0) (counterfactual ablation, as in ``analysis/vulnerability.py``);
* V(C0) to first order: V_cmap(h) ~ -E_i[g_l . (W_O^theta[:, h] z_theta(h) - W_O^0[:, h] z_0(h))] / TE_0, where
  g_l is the base model's gradient of the task metric at layer l's attention output (computed once) and the
  bracket is head h's head-local change of its residual write (``measure/first_order_cmap.py``, the estimate
  checkpoint measurement uses too): one attention call per layer of the tuned model instead of one forward per
  head.

It adds ``circuit/TASK/retention`` and ``circuit/TASK/v_circuit`` to the trainer's logs (so TensorBoard or W&B
show them when configured; use :meth:`CircuitMonitor.attach` so it runs before the reporting callbacks), keeps
them in ``history``, and warns or stops training when a task's retention falls below ``threshold``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import TrainerCallback

from forgetlens.circuits.patching import head_outputs, run_metric
from forgetlens.config.options import MONITOR_ACTIONS, DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.first_order_cmap import BaseChunk, base_chunk, first_order_cmap
from forgetlens.models.forward import model_device
from forgetlens.models.heads import HeadLayout, head_hooks
from forgetlens.tasks.base import TaskBatch, encode_examples

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class CircuitWarning(UserWarning):
    """A monitored circuit's retention fell below the threshold."""


@dataclass
class _Watched:
    """One task's fixed prompts and what the base model gives on them."""

    prompts: TaskBatch
    heads: torch.Tensor  # [layer, head] bool, C0
    weights: torch.Tensor  # [layer, head], |ie_0| / sum over C0
    te0: float  # mean m_0(clean) - m_0(corrupt)
    f0: float  # F_0(C0)
    metric: str  # the task metric every value here is measured with
    base_chunk: BaseChunk  # the base model's forward and gradient on ``prompts``, computed once


@torch.no_grad()
def _faithfulness(
    model: PreTrainedModel, layout: HeadLayout, prompts: TaskBatch, heads: torch.Tensor, metric: str
) -> float:
    """F(C0) with counterfactual ablation, as ``circuit_metric`` computes it: one corrupted pass, then the full,
    circuit-only and all-ablated runs stacked into one batch of three copies of the prompts."""
    corrupt = head_outputs(model, layout, prompts, corrupted=True)  # [layer, batch, pos, head, d_head]
    n = len(prompts)
    ablate = torch.stack([torch.zeros_like(heads), ~heads, torch.ones_like(heads)])  # [3, layer, head]
    ablate = ablate.repeat_interleave(n, 0).to(corrupt.device)  # [3 * batch, layer, head]
    source = corrupt.repeat(1, 3, 1, 1, 1)  # [layer, 3 * batch, pos, head, d_head]

    def patch(layer: int, z: torch.Tensor) -> torch.Tensor:
        return torch.where(ablate[:, layer, None, :, None], source[layer].to(z.dtype), z)

    rows = list(range(n)) * 3
    with head_hooks(model, layout, patch):
        m = run_metric(model, prompts.subset(rows), metric).view(3, n).mean(1)  # full, kept, empty
    return float((m[1] - m[2]) / (m[0] - m[2]))


@torch.no_grad()
def first_order_v_cmap(
    base: PreTrainedModel, tuned: PreTrainedModel, layout: HeadLayout, chunk: BaseChunk, te0: float
) -> torch.Tensor:
    """First-order head-local V_cmap of every head on ``chunk``'s prompts -> [layer, head] (module docstring)."""
    local, _, _ = first_order_cmap(base, tuned, layout, chunk)  # [batch, layer, head]
    return -local.mean(0) / te0


class CircuitMonitor(TrainerCallback):
    """Measure faithfulness retention and V(C0) of prior-task circuits every ``every`` steps (module docstring)."""

    def __init__(
        self,
        base: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        tasks=None,
        every: int = 50,
        n_prompts: int = 32,
        threshold: float | None = None,
        action: str = "warn",
        circuits: dict | None = None,
        seed: int = 0,
        discovery_examples: int = 128,
        metric: str = DiscoveryConfig.metric,
    ):
        """``base``: a frozen copy of the model before training; ``tasks``: task names (None = the default set);
        ``circuits``: {task: [(layer, head), ...]} to skip discovering C0 on ``base``; ``metric``: the task metric
        C0 is found and measured with (``DiscoveryConfig.metric``'s default unless given)."""
        from forgetlens.circuits.circuit import head_mask, score_heads
        from forgetlens.circuits.discover import discover_circuit, task_splits
        from forgetlens.tasks.registry import chosen_task_names, get_task, task_names

        if every < 1:
            raise ForgetlensError(f"monitor every: expected a positive number of steps, got {every}")
        if action not in MONITOR_ACTIONS:
            raise ForgetlensError(
                f"monitor action: unknown action {action!r}; expected one of {', '.join(MONITOR_ACTIONS)}"
            )
        known = task_names()
        for t in tasks or []:
            if t not in known:
                raise ForgetlensError(f"monitor tasks: unknown task {t!r}; known: {', '.join(known)}")
        self.base, self.every, self.threshold, self.action = base, every, threshold, action
        self.layout = HeadLayout.of(base)
        self.history: list[dict] = []
        self.seconds = 0.0
        self._pending: dict[str, float] = {}
        self.watched: dict[str, _Watched] = {}
        start = time.perf_counter()
        for name in chosen_task_names(tasks, model=getattr(base.config, "_name_or_path", None)):
            task = get_task(name)
            # a task this tokenizer cannot render fails here, with the task and the word named
            prompts = encode_examples(tokenizer, task.examples(n_prompts, seed + 53), name).to(model_device(base))
            if circuits and name in circuits:  # C0 given: only its weights w_h are scored here
                heads = head_mask([tuple(h) for h in circuits[name]], self.layout)
                discovery, _ = task_splits(tokenizer, task, discovery_examples, seed)
                scores = score_heads(base, self.layout, discovery, "attribution", metric=metric).mean(0)
            else:
                circuit = discover_circuit(
                    base, tokenizer, task, DiscoveryConfig(n_examples=discovery_examples, seed=seed, metric=metric)
                )
                heads, scores = head_mask(circuit.heads, self.layout), circuit.scores
            w = scores.abs() * heads
            with torch.no_grad():
                te0 = float(
                    (run_metric(base, prompts, metric) - run_metric(base, prompts, metric, corrupted=True)).mean()
                )
                f0 = _faithfulness(base, self.layout, prompts, heads, metric)
            self.watched[name] = _Watched(
                prompts, heads, w / w.sum(), te0, f0, metric, base_chunk(base, self.layout, prompts, metric)
            )
        self.setup_seconds = time.perf_counter() - start

    def attach(self, trainer) -> CircuitMonitor:
        """Add to ``trainer`` ahead of its other callbacks (so the reporting ones see the logged values)."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    @torch.no_grad()
    def circuit_values(self, model: PreTrainedModel) -> dict[str, dict[str, float]]:
        """{task: {"retention", "v_circuit"}} of ``model`` now."""
        was_training = model.training
        model.eval()
        try:
            out = {}
            for name, w in self.watched.items():
                v = first_order_v_cmap(self.base, model, self.layout, w.base_chunk, w.te0)
                out[name] = {
                    "retention": _faithfulness(model, self.layout, w.prompts, w.heads, w.metric) / w.f0,
                    "v_circuit": float((w.weights * v)[w.heads].sum()),
                }
        finally:
            model.train(was_training)
        return out

    def on_step_end(self, args, state, control, model: PreTrainedModel = None, **kwargs):
        if state.global_step % self.every or model is None:
            return control
        start = time.perf_counter()
        values = self.circuit_values(model)
        self.seconds += time.perf_counter() - start
        self.history.append(
            {"step": state.global_step, **{f"{t}/{k}": v for t, d in values.items() for k, v in d.items()}}
        )
        self._pending = {f"circuit/{t}/{k}": v for t, d in values.items() for k, v in d.items()}
        control.should_log = True
        low = {
            t: d["retention"]
            for t, d in values.items()
            if self.threshold is not None and d["retention"] < self.threshold
        }
        if low:
            what = ", ".join(f"{t} {r:.2f}" for t, r in low.items())
            if self.action == "stop":
                control.should_training_stop = True
                self.history[-1]["stopped"] = True
            warnings.warn(
                f"step {state.global_step}: circuit retention below {self.threshold} ({what})"
                + ("; stopping training" if self.action == "stop" else ""),
                CircuitWarning,
                stacklevel=2,
            )
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending and logs is not None:
            logs.update(self._pending)
            if state.log_history:
                state.log_history[-1].update(self._pending)
            self._pending = {}
        return control
