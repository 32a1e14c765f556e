"""Slow, obvious reference for ``vulnerability.circuit_statistics``: one resample at a time, Python sets."""

import numpy as np
from scipy.stats import rankdata

from forgetlens.analysis.vulnerability import VULNERABLE_TAU, PromptMeasurements


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(a, b) else float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _top(scores: np.ndarray, k: int) -> set[int]:
    order = sorted(range(scores.size), key=lambda i: (-abs(scores.flat[i]), i))
    return set(order[:k])


def reference_statistics(
    base: PromptMeasurements,
    tuned: PromptMeasurements,
    circuit_mask: np.ndarray,
    weights: np.ndarray,
    idx,
    k_grid: list[int],
) -> dict[str, np.ndarray]:
    """All per-head and circuit statistics on prompts ``idx`` (slice or index array)."""
    ie0 = base.ie[idx].mean(0) / base.te[idx].mean()  # [L, H]
    ie1 = tuned.ie[idx].mean(0) / tuned.te[idx].mean()
    denom = np.abs(ie0)
    v_imp = np.divide(ie0 - ie1, denom, out=np.zeros_like(ie0), where=denom > 0)
    v_cmap = -tuned.cmap[idx].mean(0) / base.te[idx].mean()
    v_cmap_total = -tuned.cmap_total[idx].mean(0) / base.te[idx].mean()
    drift = tuned.drift[idx].mean(0)

    def faith(m: PromptMeasurements) -> float:
        empty = m.m_empty[idx].mean()
        return (m.m_circuit[idx].mean() - empty) / (m.m_full[idx].mean() - empty)

    f0, f1 = faith(base), faith(tuned)
    c = circuit_mask.astype(bool)
    k = int(c.sum())
    own = _top(ie1, k)
    base_set = _top(ie0, k)
    preserved = len(own & base_set) / k
    jaccard = len(own & base_set) / len(own | base_set)
    areas = []
    for kk in k_grid:
        a, b = _top(ie0, kk), _top(ie1, kk)
        areas.append((len(a & b) / kk, len(a & b) / len(a | b)))
    return {
        "ie_base": ie0,
        "ie_tuned": ie1,
        "v_imp": v_imp,
        "v_cmap": v_cmap,
        "v_cmap_total": v_cmap_total,
        "drift": drift,
        "faithfulness_base": np.float64(f0),
        "faithfulness_tuned": np.float64(f1),
        "retention": np.float64(f1 / f0),
        "v_circuit": np.float64((weights * v_cmap)[c].sum()),
        "v_circuit_total": np.float64((weights * v_cmap_total)[c].sum()),
        "v_circuit_sum": np.float64(v_cmap[c].sum()),
        "v_circuit_total_sum": np.float64(v_cmap_total[c].sum()),
        "v_imp_circuit": np.float64((weights * v_imp)[c].sum()),
        "drift_circuit": np.float64((weights * drift)[c].sum()),
        "vulnerable_fraction": np.float64((v_cmap[c] > VULNERABLE_TAU).mean()),
        "preserved_fraction": np.float64(preserved),
        "jaccard": np.float64(jaccard),
        "spearman": np.float64(_spearman(ie0.ravel(), ie1.ravel())),
        "preserved_area": np.float64(np.mean([a for a, _ in areas])),
        "jaccard_area": np.float64(np.mean([j for _, j in areas])),
    }
