"""Head-level circuits of one model: discovery (exact patching, attribution (EAP, EAP-IG), DBM), ablations and
faithfulness.  A tuned model compared with the base (CMAP in its forms) is ``measure/``'s."""

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.circuit import Circuit, faithfulness_curve, rank_heads, score_heads
from forgetlens.circuits.discover import circuit_to_json, discover_circuit, task_splits
from forgetlens.circuits.patching import circuit_metric, exact_head_effects, head_outputs

__all__ = [
    "attribution_scores",
    "Circuit",
    "faithfulness_curve",
    "rank_heads",
    "score_heads",
    "circuit_to_json",
    "discover_circuit",
    "task_splits",
    "circuit_metric",
    "exact_head_effects",
    "head_outputs",
]
