"""Each model's own circuit against the base model's: the paper's retention measures, with a null and a ceiling.

The paper (arXiv 2605.28860) finds a circuit separately in the base model (C0) and in each tuned model M (C_M)
and asks how much of C0 survives. With H heads in all::

    retention(M) = |C_M ∩ C0| / |C0|        share of the base circuit still in M's own circuit
    overlap(M)   = |C_M ∩ C0| / |C_M|       share of M's circuit that was already the base's
    jaccard(M)   = |C_M ∩ C0| / |C_M ∪ C0|
    mask shift   = m_h(M) - m_h(base)        per head, for DBM circuits (masks in [0, 1])
    vulnerable   = {h in C0 : m_h(SFT) < m_h(RL) - delta}   (the paper's rule; the mirror rule is reported too)
    DCV_paper    = retention(RL) - retention(SFT)   (= V_SFT - V_RL with V = 1 - retention)

Large circuits overlap by chance (two random halves of the heads share about half of each), so every set
measure comes with a **permutation null**: the same measure for random head sets of |C_M| heads, its mean, 95th
percentile and a one-sided p-value; and a **split-half ceiling**: the base circuit found again on each half of the
discovery prompts, whose agreement is what re-finding the *same* model gives (conservative: each half has half the
prompts). Seeds give the intervals (Student t over fine-tuning seeds). Pure arrays: no model is run here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from forgetlens.analysis.runs import ModelLabel
from forgetlens.analysis.seeds import t_interval

Head = tuple[int, int]
SET_MEASURES = ("retention", "overlap", "jaccard")


def set_agreement(base: Iterable[Head], other: Iterable[Head]) -> dict[str, float]:
    """retention, overlap and Jaccard of ``other`` against ``base`` (NaN where a denominator is empty)."""
    a, b = {tuple(h) for h in base}, {tuple(h) for h in other}
    both, either = len(a & b), len(a | b)
    return {
        "retention": both / len(a) if a else float("nan"),
        "overlap": both / len(b) if b else float("nan"),
        "jaccard": both / either if either else float("nan"),
    }


def null_agreement(n_total: int, k_base: int, k_other: int, n_null: int, seed: int) -> dict[str, np.ndarray]:
    """Each set measure for ``n_null`` random head sets of ``k_other`` heads against a fixed set of ``k_base``
    (by symmetry any fixed set): {measure: [n_null] values}."""
    rng = np.random.default_rng(seed)
    base = np.zeros(n_total, dtype=bool)
    base[:k_base] = True
    values = {m: np.empty(n_null) for m in SET_MEASURES}
    for i in range(n_null):
        chosen = rng.choice(n_total, size=k_other, replace=False)
        both = int(base[chosen].sum())
        either = k_base + k_other - both
        values["retention"][i] = both / k_base if k_base else np.nan
        values["overlap"][i] = both / k_other if k_other else np.nan
        values["jaccard"][i] = both / either if either else np.nan
    return values


def with_null(observed: dict[str, float], null: dict[str, np.ndarray]) -> dict[str, dict]:
    """{measure: {value, null_mean, null_q95, p_null}}; p_null = (1 + #(null >= value)) / (1 + n_null)."""
    out = {}
    for m in SET_MEASURES:
        values, x = null[m], observed[m]
        finite = values[np.isfinite(values)]
        out[m] = {
            "value": x,
            "null_mean": float(finite.mean()) if finite.size else float("nan"),
            "null_q95": float(np.quantile(finite, 0.95)) if finite.size else float("nan"),
            "p_null": float((1 + (finite >= x).sum()) / (1 + finite.size))
            if finite.size and np.isfinite(x)
            else float("nan"),
        }
    return out


def mask_shift(base_masks: np.ndarray, masks: np.ndarray, base_heads: Iterable[Head]) -> dict:
    """Δm_h = m_h(M) - m_h(base) ([layer, head] arrays): mean over C0, mean |Δm| over C0 and over all heads,
    and the per-head shifts."""
    shift = np.asarray(masks, float) - np.asarray(base_masks, float)  # [layer, head]
    in_c0 = np.zeros(shift.shape, dtype=bool)
    for layer, head in base_heads:
        in_c0[layer, head] = True
    return {
        "mean_c0": float(shift[in_c0].mean()) if in_c0.any() else float("nan"),
        "mean_abs_c0": float(np.abs(shift[in_c0]).mean()) if in_c0.any() else float("nan"),
        "mean_abs_all": float(np.abs(shift).mean()),
        "per_head": shift.tolist(),
    }


def compare_own_circuit(
    base_heads: list[Head],
    heads: list[Head],
    n_total: int,
    n_null: int,
    seed: int,
    base_masks: np.ndarray | None = None,
    masks: np.ndarray | None = None,
) -> dict:
    """One model's circuit against the base circuit: sizes, the set measures with their null, mask shifts."""
    observed = set_agreement(base_heads, heads)
    null = null_agreement(n_total, len(base_heads), len(heads), n_null, seed)
    out = {"k": len(heads), "k_base": len(base_heads), **with_null(observed, null)}
    if base_masks is not None and masks is not None:
        out["mask_shift"] = mask_shift(base_masks, masks, base_heads)
    return out


def split_half_ceiling(half_a: list[Head], half_b: list[Head]) -> dict:
    """Agreement of the same model's circuits found on two halves of the prompts, each way and averaged (the
    ceiling a tuned model's agreement with the base is read against)."""
    ab, ba = set_agreement(half_a, half_b), set_agreement(half_b, half_a)
    return {
        "retention": float(np.nanmean([ab["retention"], ba["retention"]])),
        "overlap": float(np.nanmean([ab["overlap"], ba["overlap"]])),
        "jaccard": ab["jaccard"],
        "k_halves": [len(half_a), len(half_b)],
    }


def vulnerable_heads(
    base_heads: list[Head], masks_sft: np.ndarray, masks_rl: np.ndarray, delta: float
) -> dict[str, list[list[int]]]:
    """The paper's vulnerable heads {h in C0 : m_h(SFT) < m_h(RL) - delta}, and the mirror set
    {h in C0 : m_h(RL) < m_h(SFT) - delta} (which a rule that only favours RL by construction would hide)."""
    sft, rl = np.asarray(masks_sft, float), np.asarray(masks_rl, float)
    return {
        "sft_below_rl": [[l, h] for l, h in base_heads if sft[l, h] < rl[l, h] - delta],
        "rl_below_sft": [[l, h] for l, h in base_heads if rl[l, h] < sft[l, h] - delta],
    }


def head_jaccards(circuits: dict[int, list[Head]]) -> dict[str, float]:
    """Seed-to-seed agreement of one method's circuits: the mean and the range of the pairwise Jaccards."""
    seeds = sorted(circuits)
    pairs = [set_agreement(circuits[a], circuits[b])["jaccard"] for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    if not pairs:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n_pairs": 0}
    return {
        "mean": float(np.mean(pairs)),
        "min": float(np.min(pairs)),
        "max": float(np.max(pairs)),
        "n_pairs": len(pairs),
    }


def over_seeds(values: dict[int, float]) -> dict:
    """Mean over seeds with a Student-t 95 % interval and the per-seed values (``analysis/seeds.t_interval``)."""
    seeds = sorted(values)
    return {**t_interval([values[s] for s in seeds]), "seeds": seeds, "per_seed": [values[s] for s in seeds]}


def _heads(record: dict) -> list[Head]:
    return [(int(l), int(h)) for l, h in record["heads"]]


def summarise_method(records: dict[str, dict], n_total: int, n_null: int, delta: float, seed: int) -> dict:
    """One discovery method's own circuits, {label: record} with ``base``, ``base.half0``, ``base.half1`` and
    tuned labels ``RUN-sSEED@STEP``: every comparison of this module, per model and over seeds."""
    from forgetlens.analysis.seeds import seed_group

    base = records["base"]
    base_heads = _heads(base)
    is_dbm = base["method"] == "dbm"
    base_masks = np.asarray(base["scores"], float) if is_dbm else None
    out: dict = {
        "base": {key: base[key] for key in ("k", "faithfulness", "heads") if key in base},
        "ceiling": split_half_ceiling(_heads(records["base.half0"]), _heads(records["base.half1"]))
        if "base.half0" in records and "base.half1" in records
        else None,
        "models": {},
    }
    if "objective_faithfulness" in base:
        out["base"]["objective_faithfulness"] = base["objective_faithfulness"]
    by_group: dict[str, dict[int, str]] = {}
    for label, record in records.items():
        if label.startswith("base"):
            continue
        masks = np.asarray(record["scores"], float) if is_dbm else None
        row = compare_own_circuit(base_heads, _heads(record), n_total, n_null, seed, base_masks, masks)
        row["faithfulness"] = record["faithfulness"]
        if "objective_faithfulness" in record:
            row["objective_faithfulness"] = record["objective_faithfulness"]
        row["heads"] = record["heads"]
        out["models"][label] = row
        grouped = seed_group(label)
        if grouped:
            by_group.setdefault(grouped[0], {})[grouped[1]] = label
    out["groups"] = {}
    for group, labels in by_group.items():
        rows = {s: out["models"][lab] for s, lab in labels.items()}
        summary = {m: over_seeds({s: r[m]["value"] for s, r in rows.items()}) for m in SET_MEASURES}
        summary["null_retention"] = over_seeds({s: r["retention"]["null_mean"] for s, r in rows.items()})
        summary["k"] = over_seeds({s: float(r["k"]) for s, r in rows.items()})
        summary["faithfulness"] = over_seeds({s: r["faithfulness"] for s, r in rows.items()})
        if is_dbm:
            summary["mask_shift_abs_c0"] = over_seeds({s: r["mask_shift"]["mean_abs_c0"] for s, r in rows.items()})
        summary["seed_jaccard"] = head_jaccards({s: _heads(records[lab]) for s, lab in labels.items()})
        out["groups"][group] = summary
    out["dcv_paper"] = _paired_differences(out, by_group)
    if is_dbm:
        out["vulnerable"] = _vulnerable(records, by_group, base_heads, delta)
        out["heads_tested"] = {label: r["heads_tested"] for label, r in records.items() if "heads_tested" in r}
    return out


PAIRS = (("rl", "sft"), ("sft-rl", "sft"), ("sft-rl", "rl"))
"""(A, B) method pairs whose retention difference A - B is reported per seed (``rl - sft`` is DCV_paper)."""


def _method_groups(by_group: dict[str, dict[int, str]]) -> dict[str, str]:
    """{method: its last checkpoint's group} (``sft`` -> ``sft@24``)."""
    last: dict[str, tuple[int, str]] = {}
    for group in by_group:
        label = ModelLabel.parse(group)
        method, step = str(label.run), label.step
        if step is not None and (method not in last or step > last[method][0]):
            last[method] = (step, group)
    return {m: g for m, (_, g) in last.items()}


def _paired_differences(out: dict, by_group: dict[str, dict[int, str]]) -> dict:
    """Retention (and Jaccard) differences between methods' last checkpoints, paired by seed, over seeds."""
    groups = _method_groups(by_group)
    result = {}
    for a, b in PAIRS:
        if a not in groups or b not in groups:
            continue
        la, lb = by_group[groups[a]], by_group[groups[b]]
        seeds = sorted(set(la) & set(lb))
        if not seeds:
            continue
        result[f"{a} - {b}"] = {
            m: over_seeds({s: out["models"][la[s]][m]["value"] - out["models"][lb[s]][m]["value"] for s in seeds})
            for m in ("retention", "jaccard")
        }
    return result


def masks_of(record: dict) -> np.ndarray:
    """A DBM record's final masks [layer, head]."""
    return np.asarray(record["scores"], float)


def _vulnerable(records: dict[str, dict], by_group: dict[str, dict[int, str]], base_heads: list[Head], delta: float):
    """The paper's vulnerable heads per seed (SFT against RL, and SFT against RL-from-SFT), with counts."""
    groups = _method_groups(by_group)
    out = {}
    for other in ("rl", "sft-rl"):
        if "sft" not in groups or other not in groups:
            continue
        sft, rl = by_group[groups["sft"]], by_group[groups[other]]
        per_seed = {
            s: vulnerable_heads(
                base_heads, np.asarray(records[sft[s]]["scores"]), np.asarray(records[rl[s]]["scores"]), delta
            )
            for s in sorted(set(sft) & set(rl))
        }
        out[f"sft vs {other}"] = {
            "delta": delta,
            "per_seed": {str(s): v for s, v in per_seed.items()},
            "n_sft_below": over_seeds({s: float(len(v["sft_below_rl"])) for s, v in per_seed.items()}),
            "n_mirror": over_seeds({s: float(len(v["rl_below_sft"])) for s, v in per_seed.items()}),
        }
    return out
