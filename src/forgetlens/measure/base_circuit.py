"""A prior task's base circuit C0 and the base model measured against it: what every tuned model is compared with.

Found on the task's discovery split (``circuits/discover.py``), measured on its evaluation split, the same split
drawn again when a stored circuit is read back, so that a study, an audit and a frontier compare tuned models on
the prompts the base was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forgetlens.analysis.vulnerability import PromptMeasurements, circuit_weights
from forgetlens.circuits.circuit import Circuit, head_mask
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.config.options import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import LoadedModel
from forgetlens.tasks.base import PriorTask, TaskBatch


@dataclass
class BaseCircuit:
    """One prior task's base circuit and everything measured on the base model against it."""

    task: PriorTask
    circuit: Circuit
    evaluation: TaskBatch
    mask: torch.Tensor  # [layer, head] bool
    weights: np.ndarray  # [layer, head] w_h from discovery scores
    measurements: PromptMeasurements  # the base model on the evaluation prompts

    @classmethod
    def of(
        cls,
        base: LoadedModel,
        layout: HeadLayout,
        task: PriorTask,
        circuit: Circuit,
        cfg: DiscoveryConfig,
        measurements: PromptMeasurements | None = None,
    ) -> BaseCircuit:
        """``circuit`` of ``task`` with its evaluation split (drawn as discovery drew it), mask and weights, and
        the base model's measurements on that split (measured here unless given, as when read back)."""
        _, evaluation = task_splits(base.tokenizer, task, cfg.n_examples, cfg.seed)
        mask = head_mask(circuit.heads, layout)
        weights = circuit_weights(circuit.scores.double().numpy(), mask.numpy())
        if measurements is None:
            measurements = circuit_measurements(
                base.model, layout, evaluation, mask, cfg.scoring_method, metric=circuit.metric
            )
        elif len(measurements.m_full) != len(evaluation):
            raise ForgetlensError(
                f"{task.name}: the stored base measurements cover {len(measurements.m_full)} prompts, the "
                f"evaluation split {len(evaluation)}; expected the run directory of this config"
            )
        return cls(task, circuit, evaluation, mask, weights, measurements)


def find_base_circuit(base: LoadedModel, layout: HeadLayout, task: PriorTask, cfg: DiscoveryConfig) -> BaseCircuit:
    """Discover C0 on the discovery split and measure the base model on the evaluation split."""
    return BaseCircuit.of(base, layout, task, discover_circuit(base.model, base.tokenizer, task, cfg), cfg)
