"""Checks that a model's circuits are real and that fast attribution agrees with exact patching.

Used for the embedded model's card and by the test-suite: for each prior task,
the Spearman correlation between attribution and exact per-head effects, and
the smallest top-k circuit reaching the faithfulness target.
"""

from __future__ import annotations

from scipy.stats import spearmanr

from forgetlens.circuits.circuit import choose_k, default_ks, faithfulness_curve, rank_heads
from forgetlens.circuits.discover import task_splits
from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.patching import exact_head_effects
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import PriorTask


def validate_task(model, tokenizer, task: PriorTask, n: int = 128, seed: int = 0, target: float = 0.8,
                  batch_size: int = 64) -> dict:
    """Attribution-vs-exact agreement and the attribution circuit for one task (on its evaluation split)."""
    layout = HeadLayout.of(model)
    discovery, evaluation = task_splits(tokenizer, task, n, seed)
    attribution = attribution_scores(model, layout, discovery, batch_size=batch_size).mean(0)
    exact = exact_head_effects(model, layout, discovery, batch_size=batch_size).mean(0)
    rho = spearmanr(attribution.flatten().numpy(), exact.flatten().numpy()).statistic
    order = rank_heads(attribution)
    curve, _ = faithfulness_curve(model, layout, evaluation, order, default_ks(layout.n_total),
                                  batch_size=batch_size)
    k = choose_k(curve, None, target)
    return {
        "spearman_attribution_vs_exact": float(rho),
        "circuit_k": k,
        "circuit_fraction": k / layout.n_total,
        "circuit_faithfulness": next(p["faithfulness"] for p in curve if p["k"] == k),
        "circuit_heads": [list(h) for h in order[:k]],
    }
