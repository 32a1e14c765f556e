"""Shares of a tuned model's change, with paired-bootstrap intervals, from the per-prompt readouts of
``measure/anatomy.py`` (pure numpy: nothing here runs a model).

For a readout m (a metric, or ``correct``) and prompts x:

    change        Δ = E[m_θ(x) - m_0(x)]                                  the whole behavioural change
    induced(I)    E[m_0(x | I) - m_0(x)],   share = induced(I) / Δ         I run on the base model
    restored(G)   E[m_θ(x) - m_θ(x | G from base)],   share = restored / Δ
    interaction   1 - Σ_G share induced(weights/G) over the groups that partition the weights

Shares are ratios of means over the same resampled prompts (never means of per-prompt ratios); a share is NaN
(``null`` in JSON) when the model did not change on that readout (Δ = 0, as for identical models, where every
effect is exactly 0).  A share near 1 says the intervention carries the whole change; induced and restored
shares of one group differ when the group's effect depends on the rest of the model (non-additivity).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgetlens.analysis.stats import bootstrap_indices

PARTITION = ("attention", "mlp", "embeddings", "unembedding", "final_norm", "other")
"""Weight groups whose induced shares would add up to 1 if their effects added (mirrors
``measure.anatomy.WEIGHT_GROUPS``)."""


PER_PROMPT = ("joint_total/C0", "joint_local/C0")
"""Interventions whose per-prompt effects are kept (on the anatomy's metric and ``correct``), so that two tuned
models can be compared prompt by prompt."""


def _interval(values: np.ndarray, reps: np.ndarray) -> dict:
    low, high = np.nanpercentile(reps, [2.5, 97.5]) if np.isfinite(reps).any() else (np.nan, np.nan)
    return {"value": float(values), "ci_low": float(low), "ci_high": float(high)}


def _mean(values: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean over prompts, means over each resample [n_boot])."""
    return values.mean(), values[idx].mean(1)


def _ratio(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> dict:
    """mean(num) / mean(den) with its paired-bootstrap interval; NaN where the denominator is exactly 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n, nr = _mean(num, idx)
        d, dr = _mean(den, idx)
        value = n / d if d != 0 else np.nan
        reps = np.where(dr != 0, nr / np.where(dr == 0, 1, dr), np.nan)
    return _interval(np.asarray(value), reps)


def summarise_anatomy(anatomy: Any, heads: list[tuple[int, int]], n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything :class:`measure.anatomy.Anatomy` holds, as effects and shares with 95 % intervals."""
    base, tuned = anatomy.base, anatomy.tuned
    n = len(next(iter(base.values())))
    idx = bootstrap_indices(n, n_boot, seed)
    readouts = list(base)
    change = {m: tuned[m] - base[m] for m in readouts}  # [prompt]
    out: dict = {
        "metric": anatomy.metric,
        "n_prompts": n,
        "n_boot": n_boot,
        "forward_passes": anatomy.forward_passes,
        "tied_embeddings": anatomy.tied_embeddings,
        "behaviour": {
            m: {
                "base": float(base[m].mean()),
                "tuned": float(tuned[m].mean()),
                "change": _interval(*_mean(change[m], idx)),
            }
            for m in readouts
        },
        "induced": {},
        "restored": {},
        "blocks": anatomy.blocks,
    }
    for name, reads in anatomy.induced.items():
        out["induced"][name] = {
            m: {
                "effect": _interval(*_mean(reads[m] - base[m], idx)),
                "share": _ratio(reads[m] - base[m], change[m], idx),
            }
            for m in readouts
        }
    for name, reads in anatomy.restored.items():
        out["restored"][name] = {
            m: {
                "effect": _interval(*_mean(tuned[m] - reads[m], idx)),
                "share": _ratio(tuned[m] - reads[m], change[m], idx),
            }
            for m in readouts
        }
    groups = [g for g in PARTITION if f"weights/{g}" in anatomy.induced]
    out["interaction"] = {}
    for m in readouts:
        total = sum(anatomy.induced[f"weights/{g}"][m] - base[m] for g in groups)  # [prompt]
        out["interaction"][m] = _ratio(change[m] - total, change[m], idx)
    out["per_prompt"] = {  # for comparisons between models on the same prompts (analysis/summary.py's claims)
        m: {
            "change": change[m].tolist(),
            **{name: (anatomy.induced[name][m] - base[m]).tolist() for name in PER_PROMPT if name in anatomy.induced},
        }
        for m in (anatomy.metric, "correct")
    }
    out["heads_outside_circuit"] = _outside_heads(anatomy, heads, change[anatomy.metric], idx)
    out["format"] = _format(anatomy.format, base.get("correct"), tuned.get("correct"), idx)
    return out


def _outside_heads(anatomy, heads: list[tuple[int, int]], change: np.ndarray, idx: np.ndarray) -> list[dict]:
    """The heads outside C0 of largest |estimated total change|, each as a share of the whole change: first
    order for all of them, exact where it was patched."""
    est = anatomy.head_estimates  # [prompt, layer, head]
    size = np.abs(est.mean(0))
    circuit = set(map(tuple, heads))
    order = [divmod(int(f), est.shape[2]) for f in np.argsort(-size.ravel())]
    rows = []
    for layer, head in [h for h in order if h not in circuit][: max(8, len(anatomy.head_exact))]:
        exact = anatomy.head_exact.get((layer, head))
        rows.append(
            {
                "layer": layer,
                "head": head,
                "share_first_order": _ratio(est[:, layer, head], change, idx),
                "share_exact": None if exact is None else _ratio(exact, change, idx),
            }
        )
    return rows


def _format(fmt: dict, base_correct, tuned_correct, idx: np.ndarray) -> dict:
    """Top-1 kinds on wrong prompts, mass per kind (and its change) with intervals, the answer's rank."""
    kinds = fmt["kinds"]
    out: dict = {"kinds": kinds}
    for name, correct in (("base", base_correct), ("tuned", tuned_correct)):
        wrong = correct == 0
        top = fmt[name]["top1_kind"][wrong]
        out[name] = {
            "n_wrong": int(wrong.sum()),
            "top1_kind_when_wrong": {k: int((top == i).sum()) for i, k in enumerate(kinds)},
            "mass": {k: float(fmt[name]["mass"][:, i].mean()) for i, k in enumerate(kinds)},
            "answer_rank_among_prompt_words": float(fmt[name]["answer_rank_among_prompt_words"].mean()),
        }
    moved = fmt["tuned"]["mass"] - fmt["base"]["mass"]  # [prompt, kind]
    out["mass_moved"] = {k: _interval(*_mean(moved[:, i], idx)) for i, k in enumerate(kinds)}
    return out
