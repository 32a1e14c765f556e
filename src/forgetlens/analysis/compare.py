"""Base vs tuned models on one task's base circuit, with paired bootstrap CIs and DCV.

``compare_models`` takes per-prompt measurements (``measure/circuit_damage.circuit_measurements``) of the
base model and of each tuned model on the same evaluation prompts, resamples prompts once for all of them, and
returns every statistic of ``vulnerability.circuit_statistics`` as ``{value, ci_low, ci_high}`` (arrays as
nested lists [layer][head]).  For every SFT/RL pair of models (``analysis/runs.py``: ``sft-s0@12`` with
``rl-s0@12``) it adds
differential circuit vulnerability DCV = V_SFT - V_RL per head and for the circuit, each with a CI,
and a paired sign-flip permutation test per head with Benjamini-Hochberg correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forgetlens.analysis.runs import compared_pairs
from forgetlens.analysis.stats import (
    benjamini_hochberg,
    bootstrap_indices,
    paired_bootstrap_batched,
    paired_models_test,
    paired_permutation_pvalues,
)
from forgetlens.analysis.vulnerability import PromptMeasurements, circuit_statistics
from forgetlens.config.methods import Comparison

DCV_KEYS = (
    "v_cmap",
    "v_cmap_total",
    "v_imp",
    "drift",
    "v_circuit",
    "v_circuit_total",
    "v_circuit_sum",
    "v_circuit_total_sum",
    "v_imp_circuit",
    "drift_circuit",
    "retention",
    "vulnerable_fraction",
    "preserved_fraction",
)
KEPT_KEYS = ("retention", "preserved_fraction")
"""Of :data:`DCV_KEYS`, the measures of what a model kept (larger is less damage): their DCV is RL minus SFT, so
that every DCV form is positive when SFT damages more (the others, measures of damage, are SFT minus RL)."""


def _as_json(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict:
    return {
        "value": np.asarray(value).tolist(),
        "ci_low": np.asarray(low).tolist(),
        "ci_high": np.asarray(high).tolist(),
    }


def _bootstrap_dict(stat, idx) -> dict[str, dict]:
    return {k: _as_json(*v) for k, v in paired_bootstrap_batched(stat, idx).items()}


def compare_models(
    base: PromptMeasurements,
    tuned: dict[str, PromptMeasurements],
    circuit_mask: np.ndarray,
    weights: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    n_perm: int = 2000,
    *,
    comparisons: Sequence[Comparison],
) -> dict:
    """Statistics with CIs per tuned model, plus DCV for every pair of models ``comparisons`` declare
    (:func:`analysis.runs.compared_pairs`): the first's damage minus the second's.

    ``circuit_mask`` (bool) and ``weights``: [layer, head].  Per-head statistics are [layer, head] nested lists.

    Returns ``{"n_prompts", "n_boot", "models": {label: stats}, "dcv": {pair: stats},
    "dcv_test": {pair: {p_value, q_value_bh, n_permutations}}}``; ``dcv`` is empty without pairs.
    """
    n = base.te.shape[0]
    idx = bootstrap_indices(n, n_boot, seed)
    k_grid = list(range(1, max(2, 2 * int(circuit_mask.sum())) + 1))
    k_grid = [k for k in k_grid if k <= circuit_mask.size]

    def stats_for(m):
        return lambda i: circuit_statistics(base, m, circuit_mask, weights, i, k_grid)

    out = {
        "n_prompts": n,
        "n_boot": n_boot,
        "models": {name: _bootstrap_dict(stats_for(m), idx) for name, m in tuned.items()},
        "dcv": {},
        "dcv_test": {},
    }
    for name, m in tuned.items():  # per-head V_cmap is exact patching here, first-order estimate elsewhere
        for key, mask in (("cmap_exact", m.cmap_exact), ("cmap_total_exact", m.cmap_total_exact)):
            if mask is not None:
                out["models"][name][key] = mask.astype(bool).tolist()
    for pair, (sft_label, rl_label) in compared_pairs(list(tuned), comparisons).items():
        sft, rl = stats_for(tuned[sft_label]), stats_for(tuned[rl_label])

        def dcv(i, sft=sft, rl=rl):
            a, b = sft(i), rl(i)
            return {k: (b[k] - a[k] if k in KEPT_KEYS else a[k] - b[k]) for k in DCV_KEYS if k in a and k in b}

        out["dcv"][pair] = _bootstrap_dict(dcv, idx)
        sft_cmap, rl_cmap = tuned[sft_label].cmap, tuned[rl_label].cmap
        assert sft_cmap is not None and rl_cmap is not None  # measured against the base
        diffs = -(sft_cmap - rl_cmap).reshape(n, -1) / base.te.mean()
        p = paired_permutation_pvalues(diffs, n_perm, seed)
        shape = base.ie.shape[1:]
        out["dcv_test"][pair] = {
            "p_value": p.reshape(shape).tolist(),
            "q_value_bh": benjamini_hochberg(p).reshape(shape).tolist(),
            "n_permutations": n_perm,
        }
    return out


def paired_behaviour_tests(
    per_prompt: dict[str, dict], n_boot: int, seed: int, *, comparisons: Sequence[Comparison]
) -> dict[str, dict]:
    """Each model against ``base`` and each pair of models ``comparisons`` declare
    (:func:`analysis.runs.compared_pairs`), on the same prompts: ``{"SECOND - FIRST": paired_models_test}``.
    ``per_prompt``: ``{label: {"correct": [prompt], "logp_answer": [prompt]}}``, one entry labelled ``base``."""
    tuned = [label for label in per_prompt if label != "base"]
    pairs = [("base", label) for label in tuned] + list(compared_pairs(tuned, comparisons).values())
    return {
        f"{second} - {first}": paired_models_test(
            np.asarray(per_prompt[first]["correct"]),
            np.asarray(per_prompt[second]["correct"]),
            np.asarray(per_prompt[first]["logp_answer"]),
            np.asarray(per_prompt[second]["logp_answer"]),
            n_boot,
            seed,
        )
        for first, second in pairs
    }
