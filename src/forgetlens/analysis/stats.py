"""Paired bootstrap confidence intervals, paired permutation tests and Benjamini-Hochberg.

Every model is evaluated on the same prompts, so resampling is paired: one set of resampled prompt
indices is drawn per bootstrap replicate and applied to every model's per-prompt values.  Ratios are
ratios of resampled means (never means of per-prompt ratios, which explode when a prompt's
denominator is near zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}

    def covers(self, x: float) -> bool:
        return self.low <= x <= self.high


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] prompt indices drawn with replacement, reproducible from ``seed``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def paired_bootstrap(
    statistic: Callable[[np.ndarray | slice], np.ndarray], indices: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point value and (1 - alpha) percentile interval of ``statistic(index)`` -> (value, low, high).

    ``statistic`` maps an index array over prompts (or ``slice(None)`` for all prompts) to an array of
    any shape; it must apply the same index to every model's per-prompt data.
    """
    value = np.asarray(statistic(slice(None)), dtype=float)
    reps = np.stack([np.asarray(statistic(idx), dtype=float) for idx in indices])
    low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return value, low, high


def paired_bootstrap_batched(
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]], indices: np.ndarray, alpha: float = 0.05, chunk: int = 100
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`paired_bootstrap` for a statistic vectorised over resamples -> {key: (value, low, high)}.

    ``statistic`` maps index rows [B, n] to {key: [B, ...]}; resamples are evaluated ``chunk`` rows at a
    time to bound memory.
    """
    n = indices.shape[1]
    value = statistic(np.arange(n)[None])
    parts = [statistic(indices[i : i + chunk]) for i in range(0, len(indices), chunk)]
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for key, v in value.items():
        reps = np.concatenate([np.asarray(p[key], dtype=float) for p in parts])
        low, high = np.nanpercentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        out[key] = (np.asarray(v[0], dtype=float), low, high)
    return out


def paired_permutation_pvalues(diffs: np.ndarray, n_perm: int, seed: int) -> np.ndarray:
    """Two-sided sign-flip permutation p-values for mean(diffs) = 0, per column.

    diffs: [n_prompts, n_tests] paired differences (e.g. per-prompt V_SFT(h) - V_RL(h)).
    The +1 in numerator and denominator keeps p > 0 (Phipson & Smyth 2010).
    """
    diffs = np.asarray(diffs, dtype=float)
    observed = np.abs(diffs.mean(0))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, diffs.shape[0]))
    null = np.abs(signs @ diffs / diffs.shape[0])  # [n_perm, n_tests]
    exceed = (null >= observed - 1e-12).sum(0)
    pvalues = (exceed + 1) / (n_perm + 1)
    pvalues[np.all(diffs == 0, axis=0)] = 1.0
    return pvalues


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values), same shape as ``pvalues`` (any shape, e.g. [layer, head])."""
    p = np.asarray(pvalues, dtype=float).ravel()
    n = p.size
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty(n)
    out[order] = adjusted
    return out.reshape(np.shape(pvalues))


def mcnemar_p(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired 0/1 outcomes: {only_a, only_b, p}."""
    a, b = np.asarray(a_correct).astype(bool), np.asarray(b_correct).astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {"only_a": only_a, "only_b": only_b, "p": p}


def paired_models_test(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    logp_a: np.ndarray,
    logp_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Two models on the same prompts: McNemar's exact test on top-1 (``correct_*``: [prompt] 0/1; only_a / only_b
    count the prompts only the first / only the second answers) and a paired bootstrap of log p(answer), second
    minus first (``logp_*``: [prompt])."""
    return {
        "mcnemar_top1": mcnemar_p(correct_a, correct_b),
        "logp_answer": paired_mean_difference(logp_a, logp_b, n_boot, seed),
    }


def paired_mean_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of b - a over paired rows with a percentile bootstrap interval and a two-sided bootstrap p value
    (twice the smaller share of resampled means on either side of 0, counted as (k + 1) / (n_boot + 1) so that it is
    never 0: it cannot be smaller than the resampling can tell)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    reps = d[idx].mean(1)
    low, high = np.percentile(reps, [2.5, 97.5])
    tail = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (n_boot + 1)) if np.any(d) else 1.0
    return {"value": float(d.mean()), "ci_low": float(low), "ci_high": float(high), "p": float(p)}
