"""Aggregation over training seeds.

Labels (``analysis/runs.py``) carry the seed as ``-s<SEED>`` before any ``@``: ``sft-s0@40``,
``rl-s2@acc:0.5``, and DCV pairs ``-s1@40``.  Removing it gives the group (``sft@40``).  Each group's
circuit-level statistics are averaged over seeds with a Student-t 95 % interval, mean +/- t_{0.975, n-1} s /
sqrt(n): the spread of training outcomes, on top of which each seed's own prompt-bootstrap interval is kept.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from forgetlens.analysis.runs import ModelLabel

SCALAR_KEYS = (
    "v_circuit",
    "v_circuit_total",
    "v_imp_circuit",
    "drift_circuit",
    "retention",
    "vulnerable_fraction",
    "preserved_fraction",
    "jaccard",
    "spearman",
    "preserved_area",
    "jaccard_area",
)


def seed_group(label: str) -> tuple[str, int] | None:
    """``sft-s0@40`` -> (``sft@40``, 0); labels without a seed -> None."""
    parsed = ModelLabel.parse(label)
    if parsed.run.seed is None:
        return None
    return str(parsed.without_seed), parsed.run.seed


def t_interval(values: list[float]) -> dict:
    """Mean with a Student-t 95 % interval over independent runs (NaN interval for one run)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if x.size < 2:
        return {"value": mean, "ci_low": float("nan"), "ci_high": float("nan"), "n_seeds": int(x.size)}
    half = float(student_t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "n_seeds": int(x.size)}


def aggregate_seeds(entries: dict[str, dict], keys: tuple[str, ...] = SCALAR_KEYS) -> dict[str, dict]:
    """{group: {key: mean over seeds with t-interval and the per-seed values}} for groups with >= 2 seeds."""
    groups: dict[str, dict[int, dict]] = {}
    for label, stats in entries.items():
        g = seed_group(label)
        if g:
            groups.setdefault(g[0], {})[g[1]] = stats
    out: dict[str, dict] = {}
    for group, by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        seeds = sorted(by_seed)
        out[group] = {"seeds": seeds}
        for key in keys:
            if all(key in by_seed[s] for s in seeds):
                values = [by_seed[s][key]["value"] for s in seeds]
                out[group][key] = {**t_interval(values), "per_seed": values}
    return out
