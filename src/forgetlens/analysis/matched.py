"""SFT against RL where both have done equally much: matched target accuracy and matched KL.

SFT adapts faster, so comparing the methods at equal steps confounds "damages circuits more" with
"has moved further".  For each pair of runs a comparison declares (``sft:rl``: labels ``sft<REST>@STEP`` and
``rl<REST>@STEP``)
this module finds, along each run's checkpoints, where a behavioural level is first reached and
linearly interpolates the per-prompt measurements of the two checkpoints that bracket it.  The result
is a pseudo-model per run and level (``sft<REST>@acc:0.5``), measured on the same prompts as every
other model, so the paired bootstrap and DCV apply unchanged.

Levels: with a = the accuracy both runs start from (the base model's) and b = the smaller of the two
runs' best accuracies, the levels are a + f (b - a) for f in ``FRACTIONS``; for KL, f * min(max KL).
A pair where b <= a (one run never improved) gets no accuracy-matched entry.  Metrics that are linear
in per-prompt values (V_cmap, V(C0), drift) are exactly the interpolation of the checkpoints' values;
ratios (retention, normalised importance) are recomputed from interpolated numerators and denominators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from forgetlens.analysis.runs import ModelLabel, RunId, compared_pairs, pair_key
from forgetlens.analysis.vulnerability import PromptMeasurements
from forgetlens.config.methods import Comparison

FRACTIONS = (0.5, 1.0)
LEVEL_KEYS = {"acc": "target_accuracy", "kl": "kl_forward"}


def interpolate(a: PromptMeasurements, b: PromptMeasurements, lam: float) -> PromptMeasurements:
    """(1 - lam) a + lam b, field by field (per prompt)."""
    fields: dict[str, Any] = {}  # every field's array, or None where both models lack it
    for f in dataclasses.fields(PromptMeasurements):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is None or y is None:
            fields[f.name] = None
        elif x.dtype == bool:  # which heads were patched exactly: exact at the mix only where exact at both ends
            fields[f.name] = x & y
        else:
            fields[f.name] = (1 - lam) * x + lam * y
    return PromptMeasurements(**fields)


def first_crossing(values: list[float], level: float) -> tuple[int, float] | None:
    """(i, lam): the level is first reached between checkpoints i and i+1, at fraction lam; None if never."""
    if values[0] >= level:
        return 0, 0.0
    for i in range(len(values) - 1):
        lo, hi = values[i], values[i + 1]
        if lo < level <= hi:
            return i, (level - lo) / (hi - lo)
    return None


def base_as_checkpoint(base: PromptMeasurements) -> PromptMeasurements:
    """The base model's measurements as step 0 of a run (no cross-model change, no drift)."""
    zeros = np.zeros_like(base.ie)
    exact = np.ones(base.ie.shape[1:], dtype=bool)  # zero change is known exactly
    return dataclasses.replace(
        base,
        cmap=zeros,
        cmap_total=zeros,
        drift=zeros,
        cmap_estimate=zeros,
        cmap_total_estimate=zeros,
        cmap_exact=exact,
        cmap_total_exact=exact,
    )


def runs_of(labels: list[str]) -> dict[str, list[tuple[int, str]]]:
    """{run: [(step, label), ...] sorted by step} for labels of the form RUN@STEP."""
    runs: dict[str, list[tuple[int, str]]] = {}
    for label in labels:
        parsed = ModelLabel.parse(label)
        if parsed.step is not None:
            runs.setdefault(str(parsed.run), []).append((parsed.step, label))
    return {run: sorted(entries) for run, entries in runs.items()}


def matched_models(
    base: PromptMeasurements,
    tuned: dict[str, PromptMeasurements],
    behaviour: dict[str, dict[int, dict]],
    *,
    comparisons: Sequence[Comparison],
) -> tuple[dict[str, PromptMeasurements], dict]:
    """Pseudo-models at matched accuracy and KL for every pair of runs with behaviour that ``comparisons``
    declare.

    behaviour: {run: {step: {"target_accuracy": .., "kl_forward": ..}}} including step 0.
    Returns ({label: measurements}, {pair: {level_label: {"level": x, FIRST: (i, lam), SECOND: ...}}}), FIRST and
    SECOND the compared methods (``sft``, ``rl``).
    """
    runs = runs_of(list(tuned))
    start = base_as_checkpoint(base)
    out, levels = {}, {}
    pairs = [(c, pair) for c in comparisons for pair in compared_pairs(list(runs), [c]).values()]
    for comparison, (run, other) in pairs:
        first, second = comparison.first, comparison.second
        pair = {first: run, second: other}
        if not all(r in behaviour and 0 in behaviour[r] for r in pair.values()):
            continue
        chains = {}
        for method, r in pair.items():
            steps = [0] + [s for s, _ in runs[r] if s in behaviour[r]]
            models = [start] + [tuned[label] for s, label in runs[r] if s in behaviour[r]]
            chains[method] = (steps, models)
        info = {}
        for short, key in LEVEL_KEYS.items():
            series = {m: [behaviour[pair[m]][s][key] for s in chains[m][0]] for m in pair}
            lo = series[first][0] if short == "acc" else 0.0
            hi = min(max(series[first]), max(series[second]))
            if not hi > lo:
                continue
            for f in FRACTIONS:
                level = lo + f * (hi - lo)
                label = f"@{short}:{f:g}"
                entry = {"level": level}
                for method, r in pair.items():
                    steps, models = chains[method]
                    crossing = first_crossing(series[method], level)
                    assert crossing is not None  # hi <= max, so it is reached
                    i, lam = crossing
                    nxt = min(i + 1, len(models) - 1)
                    out[f"{r}{label}"] = interpolate(models[i], models[nxt], lam)
                    entry[method] = {"between_steps": [steps[i], steps[nxt]], "fraction": lam}
                info[label] = entry
        levels[pair_key(ModelLabel(RunId.parse(run)), comparison)] = info
    return out, levels
