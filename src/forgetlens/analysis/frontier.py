"""The trade-off between adaptation and forgetting, as RL's Razor (arXiv 2509.04259) draws it: every checkpoint of
every run of every method is a point (held-out target accuracy, prior-task retention); each method's frontier is
the upper envelope of its points; methods are compared along their frontiers at matched target accuracy, never
one run each at equal steps.

Definitions (``docs/methods.md``, "The trade-off"):

* A **configuration** is (arm, learning rate, step); its values are means over the seeds that reached that step.
  Retention on prior task t is acc_t(c) / acc_t(base) (a ratio of means over the same prompts), its mean over
  tasks the frontier's default y axis; target accuracy is on each seed's held-out questions.
* An arm's **frontier** F(a) is the best retention among its configurations whose target accuracy is at least a,
  the base model (step 0: retention 1) included; a configuration is on the **Pareto set** when no other
  configuration of its arm has target accuracy and retention both at least as large, one larger.
* **Matched levels**: a = base + f x (the largest target accuracy both arms reach - base) for each fraction f; the
  difference between two arms is F_b(a) - F_a(a) (positive: arm b keeps more of the prior skill at that accuracy).
* **Intervals**: a percentile bootstrap that resamples, in every replicate and for every arm alike, the seeds,
  each seed's held-out target questions and each prior task's prompts (paired: the same draws for every
  configuration), and recomputes every configuration, frontier and difference; the levels stay where the point
  estimate put them. The frontier is a maximum over configurations, so it is biased upward by noise (more for
  the arm with more configurations near the level); both arms are resampled alike, so the bias mostly cancels
  in their difference, not in each frontier.
* **Forgetting** at a point is the mean over prior tasks of the accuracy lost against the base (accuracy points);
  it is regressed on the forward KL(base || tuned) on the target across all points (R^2), and the circuit's damage
  (the mean over tasks of the base's log p(answer) minus that of the base with C0's outputs taken from the tuned
  model) is tested for what it adds beyond KL (partial R^2). Intervals resample whole runs (points of one run are
  not independent).

This module is pure: arrays in, numbers out; ``pipeline/frontier.py`` builds the :class:`Point` table from run
folders and ``report/frontier.py`` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from forgetlens.analysis.stats import mcnemar_p, paired_mean_difference
from forgetlens.config.options import RetentionKind

MEAN = "mean"
"""The key of the mean over prior tasks, beside each task's own key."""


@dataclass(frozen=True)
class Point:
    """One checkpoint of one run: what the frontier reads from its behaviour row."""

    arm: str
    """The arm (method) it belongs to, e.g. ``sft``, ``rl``."""
    lr: float
    """The run's learning rate."""
    seed: int
    """The run's seed."""
    step: int
    """The checkpoint's optimizer step (0: the base model)."""
    target_correct: np.ndarray
    """[questions]: 1 where the held-out target question was answered correctly (the seed's evaluation split)."""
    prior_correct: dict[str, np.ndarray]
    """{task: [prompts]}: top-1 correct on each prior-task prompt (the same prompts in every run)."""
    prior_logp: dict[str, np.ndarray] = field(default_factory=dict)
    """{task: [prompts]}: log p(answer)."""
    c0_logp: dict[str, np.ndarray] = field(default_factory=dict)
    """{task: [prompts]}: log p(answer) of the base model with C0's head outputs taken from this checkpoint."""
    kl_forward: float = 0.0
    """Forward KL(base || tuned) on the target's evaluation prompts, nats per completion."""
    kl_chat: float | None = None
    """Forward KL on general chat prompts, when measured."""
    seconds: float = 0.0
    """Training wall time to reach this step (the run's training seconds x step / steps trained)."""

    @property
    def config(self) -> tuple[str, float, int]:
        """(arm, lr, step): what seeds are averaged over."""
        return (self.arm, self.lr, self.step)


@dataclass
class Draw:
    """One bootstrap replicate's resampling (or the identity): seeds, each seed's target questions, each task's
    prior prompts."""

    seeds: list[int]
    questions: dict[int, np.ndarray | slice]
    prompts: dict[str, np.ndarray | slice]


def identity_draw(seeds: Sequence[int], tasks: Sequence[str]) -> Draw:
    return Draw(list(seeds), {s: slice(None) for s in seeds}, {t: slice(None) for t in tasks})


def random_draw(
    rng: np.random.Generator, seeds: Sequence[int], n_questions: dict[int, int], n_prompts: dict[str, int]
) -> Draw:
    """Seeds, questions and prompts resampled with replacement."""
    drawn = [int(s) for s in rng.choice(np.asarray(seeds), size=len(seeds), replace=True)]
    return Draw(
        drawn,
        {s: rng.integers(0, n_questions[s], n_questions[s]) for s in seeds},
        {t: rng.integers(0, n, n) for t, n in n_prompts.items()},
    )


@dataclass(frozen=True)
class ConfigValues:
    """One configuration's values under one draw: means over the seeds that reached it."""

    arm: str
    lr: float
    step: int
    accuracy: float
    """Held-out target accuracy."""
    retention: dict[str, float]
    """{task or ``mean``: accuracy retention against the base}."""
    drop: dict[str, float]
    """{task or ``mean``: accuracy points lost against the base}."""
    n_seeds: int
    damage: dict[str, float] = field(default_factory=dict)
    """{task or ``mean``: the circuit's joint damage in nats (the base's mean log p(answer) minus the base's with C0's
    outputs from this configuration); empty without circuit measurements."""
    seconds: float = 0.0
    """Mean training wall time to reach the configuration."""
    kl_forward: float = 0.0
    """Mean forward KL(base || tuned) on the target (nats per completion)."""


class PointTable:
    """Every point of a frontier study, indexed for fast resampling."""

    def __init__(self, points: Sequence[Point], retention: RetentionKind = "ratio"):
        """``retention``: ``ratio`` (tuned accuracy over the base's) or ``kept`` (the share of the prompts the base
        answered right that the tuned model still does; prompts it newly gets right count for nothing)."""
        self.retention = retention
        if not points:
            raise ValueError("no points")
        self.points = list(points)
        self.tasks = sorted(self.points[0].prior_correct)
        self.seeds = sorted({p.seed for p in self.points})
        self.arms = list(dict.fromkeys(p.arm for p in self.points))
        bases = {p.seed: p for p in self.points if p.step == 0}
        missing = [s for s in self.seeds if s not in bases]
        if missing:
            raise ValueError(f"no base (step 0) point for seeds {missing}")
        self.base = bases
        self.by_config: dict[tuple[str, float, int], dict[int, Point]] = {}
        for p in self.points:
            if p.step > 0:
                self.by_config.setdefault(p.config, {})[p.seed] = p
        self.n_questions = {s: len(bases[s].target_correct) for s in self.seeds}
        self.n_prompts = {t: len(bases[self.seeds[0]].prior_correct[t]) for t in self.tasks}

    def configs(self, arm: str) -> list[tuple[str, float, int]]:
        return sorted(c for c in self.by_config if c[0] == arm)

    def base_values(self, draw: Draw) -> ConfigValues:
        return self._values(("base", 0.0, 0), {s: self.base[s] for s in self.seeds}, draw)

    def values(self, draw: Draw, arm: str) -> list[ConfigValues]:
        """Every configuration of ``arm`` reached by every seed of ``draw``, under ``draw``."""
        out = []
        for config in self.configs(arm):
            runs = self.by_config[config]
            if all(s in runs for s in draw.seeds):
                out.append(self._values(config, runs, draw))
        return out

    def _values(self, config, runs: dict[int, Point], draw: Draw) -> ConfigValues:
        acc = float(np.mean([runs[s].target_correct[draw.questions[s]].mean() for s in draw.seeds]))
        retention, drop = {}, {}
        for t in self.tasks:
            idx = draw.prompts[t]
            base = float(np.mean([self.base[s].prior_correct[t][idx].mean() for s in draw.seeds]))
            tuned = float(np.mean([runs[s].prior_correct[t][idx].mean() for s in draw.seeds]))
            if self.retention == "kept":
                retention[t] = self._kept(runs, draw, t)
            else:
                retention[t] = tuned / base if base > 0 else math.nan
            drop[t] = base - tuned
        retention[MEAN] = float(np.mean([retention[t] for t in self.tasks]))
        drop[MEAN] = float(np.mean([drop[t] for t in self.tasks]))
        damage = {}
        if all(runs[s].c0_logp for s in draw.seeds):
            for t in self.tasks:
                idx = draw.prompts[t]
                damage[t] = float(
                    np.mean(
                        [self.base[s].prior_logp[t][idx].mean() - runs[s].c0_logp[t][idx].mean() for s in draw.seeds]
                    )
                )
            damage[MEAN] = float(np.mean([damage[t] for t in self.tasks]))
        seconds = float(np.mean([runs[s].seconds for s in draw.seeds]))
        kl = float(np.mean([runs[s].kl_forward for s in draw.seeds]))
        return ConfigValues(config[0], config[1], config[2], acc, retention, drop, len(draw.seeds), damage, seconds, kl)

    def _kept(self, runs: dict[int, Point], draw: Draw, task: str) -> float:
        """Of the (drawn) prompts the base answered right, summed over the drawn seeds, the share still right."""
        right = kept = 0.0
        for s in draw.seeds:
            idx = draw.prompts[task]
            base = self.base[s].prior_correct[task][idx]  # [prompts]: 1 where the base was right
            right += float(base.sum())
            kept += float((base * runs[s].prior_correct[task][idx]).sum())
        return kept / right if right > 0 else math.nan


def frontier_value(points: Sequence[ConfigValues], base: ConfigValues, level: float, key: str = MEAN) -> float:
    """F(level): the best retention (``key``) among ``points`` and the base whose target accuracy is at least
    ``level``; NaN when none is."""
    best = math.nan
    for p in [base, *points]:
        if p.accuracy >= level and not math.isnan(p.retention[key]):
            best = p.retention[key] if math.isnan(best) else max(best, p.retention[key])
    return best


def frontier_choice(points: Sequence[ConfigValues], base: ConfigValues, level: float, key: str = MEAN):
    """The configuration that attains F(level) (ties: the earlier step, then the smaller rate), or None."""
    eligible = [p for p in [base, *points] if p.accuracy >= level and not math.isnan(p.retention[key])]
    if not eligible:
        return None
    return max(eligible, key=lambda p: (p.retention[key], -p.step, -p.lr))


def pareto_set(points: Sequence[ConfigValues], key: str = MEAN) -> list[ConfigValues]:
    """The configurations no other one dominates (target accuracy and retention both >=, one >), by accuracy."""
    out = []
    for p in points:
        dominated = any(
            q is not p
            and q.accuracy >= p.accuracy
            and q.retention[key] >= p.retention[key]
            and (q.accuracy > p.accuracy or q.retention[key] > p.retention[key])
            for q in points
        )
        if not dominated:
            out.append(p)
    return sorted(out, key=lambda p: (p.accuracy, p.retention[key]))


def matched_levels(table: PointTable, fractions: Sequence[float], arms: Sequence[str]) -> dict[str, float]:
    """{"f=0.75": accuracy}: base + f x (the largest accuracy every arm of ``arms`` reaches - base), point
    estimate; empty when some arm never rises above the base."""
    draw = identity_draw(table.seeds, table.tasks)
    base = table.base_values(draw).accuracy
    reach = min(max((v.accuracy for v in table.values(draw, arm)), default=base) for arm in arms)
    if reach <= base:
        return {}
    return {f"f={f:g}": base + f * (reach - base) for f in fractions}


def _percentile(values: list[float], alpha: float) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _stat(value: float, reps: list[float], alpha: float = 0.05) -> dict:
    low, high = _percentile(reps, alpha)
    finite = [v for v in reps if math.isfinite(v)]
    return {
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "defined_share": len(finite) / len(reps) if reps else math.nan,  # resamples where both arms reach the level
    }


def compare_frontiers(
    table: PointTable,
    arms: Sequence[str],
    fractions: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Each arm's frontier at the matched levels and the difference of every later arm against the first, per
    task and for the mean, with bootstrap intervals (module docstring).

    Returns ``{"levels": {name: accuracy}, "frontier": {arm: {name: {task: stat}}}, "difference": {"B-A": {name:
    {task: stat}}}, "least_kl": {arm: {name: stat}}, "least_kl_difference": {"B-A": {name: stat}}}``; a stat is
    ``{value, ci_low, ci_high, defined_share}``; ``least_kl`` is :func:`least_kl`."""
    levels = matched_levels(table, fractions, arms)
    keys = [*table.tasks, MEAN]
    pairs = [(arms[0], b) for b in arms[1:]]

    def measure(draw: Draw) -> tuple[dict, dict, dict, dict]:
        base = table.base_values(draw)
        per_arm = {arm: table.values(draw, arm) for arm in arms}
        front = {
            arm: {name: {k: frontier_value(per_arm[arm], base, a, k) for k in keys} for name, a in levels.items()}
            for arm in arms
        }
        diff = {
            f"{b}-{a}": {name: {k: front[b][name][k] - front[a][name][k] for k in keys} for name in levels}
            for a, b in pairs
        }
        kl = {arm: {name: least_kl(per_arm[arm], a) for name, a in levels.items()} for arm in arms}
        kl_diff = {f"{b}-{a}": {name: kl[b][name] - kl[a][name] for name in levels} for a, b in pairs}
        return front, diff, kl, kl_diff

    point_front, point_diff, point_kl, point_kl_diff = measure(identity_draw(table.seeds, table.tasks))
    rng = np.random.default_rng(seed)
    reps = [measure(random_draw(rng, table.seeds, table.n_questions, table.n_prompts)) for _ in range(n_boot)]
    front_out = {
        arm: {
            name: {k: _stat(point_front[arm][name][k], [r[0][arm][name][k] for r in reps]) for k in keys}
            for name in levels
        }
        for arm in arms
    }
    diff_out = {
        pair: {
            name: {k: _stat(point_diff[pair][name][k], [r[1][pair][name][k] for r in reps]) for k in keys}
            for name in levels
        }
        for pair in point_diff
    }
    kl_out = {
        arm: {name: _stat(point_kl[arm][name], [r[2][arm][name] for r in reps]) for name in levels} for arm in arms
    }
    kl_diff_out = {
        pair: {name: _stat(point_kl_diff[pair][name], [r[3][pair][name] for r in reps]) for name in levels}
        for pair in point_kl_diff
    }
    return {
        "levels": levels,
        "frontier": front_out,
        "difference": diff_out,
        "least_kl": kl_out,
        "least_kl_difference": kl_diff_out,
    }


def least_kl(points: Sequence[ConfigValues], level: float) -> float:
    """The least forward KL on the target among ``points`` whose target accuracy is at least ``level`` (RL's Razor:
    how far from the base an arm must move to adapt that far); NaN when none is."""
    return min((v.kl_forward for v in points if v.accuracy >= level), default=math.nan)


def adaptation_speed(table: PointTable, arms: Sequence[str], levels: dict[str, float]) -> dict:
    """{arm: {level: {step, lr, seconds} of the earliest configuration (mean over seeds) reaching it, or None}}:
    how fast each arm can adapt that far, over all its learning rates."""
    draw = identity_draw(table.seeds, table.tasks)
    out: dict = {}
    for arm in arms:
        values = table.values(draw, arm)
        out[arm] = {}
        for name, level in levels.items():
            reached = [v for v in values if v.accuracy >= level]
            first = min(reached, key=lambda v: (v.step, v.seconds), default=None)
            out[arm][name] = None if first is None else {"step": first.step, "lr": first.lr, "seconds": first.seconds}
    return out


def paired_tests(table: PointTable, arms: Sequence[str], levels: dict[str, float], n_boot: int, seed: int) -> dict:
    """At each matched level and for each prior task, the configuration each arm's frontier picks there and a paired
    test of the two on the same prompts: McNemar on top-1 (pairs = prompt x seed) and a paired bootstrap on log
    p(answer) (per prompt, mean over seeds). {"B-A": {level: {task: {...}}}}."""
    draw = identity_draw(table.seeds, table.tasks)
    base = table.base_values(draw)
    per_arm = {arm: table.values(draw, arm) for arm in arms}
    out: dict = {}
    for b in arms[1:]:
        a = arms[0]
        pair = out.setdefault(f"{b}-{a}", {})
        for name, level in levels.items():
            pair[name] = {}
            for task in table.tasks:
                choice = {arm: frontier_choice(per_arm[arm], base, level, task) for arm in (a, b)}
                if choice[a] is None or choice[b] is None:
                    continue
                runs = {arm: _runs_of(table, choice[arm]) for arm in (a, b)}
                correct = {arm: np.concatenate([runs[arm][s].prior_correct[task] for s in table.seeds]) for arm in runs}
                test: dict = {
                    "chosen": {arm: {"lr": choice[arm].lr, "step": choice[arm].step} for arm in (a, b)},
                    "mcnemar_top1": mcnemar_p(correct[a], correct[b]),
                }
                if all(task in runs[arm][table.seeds[0]].prior_logp for arm in (a, b)):
                    logp = {
                        arm: np.mean([runs[arm][s].prior_logp[task] for s in table.seeds], axis=0) for arm in (a, b)
                    }
                    test["logp_answer"] = paired_mean_difference(logp[a], logp[b], n_boot, seed)
                pair[name][task] = test
    return out


def _runs_of(table: PointTable, values: ConfigValues) -> dict[int, Point]:
    """{seed: point} of a configuration (the base's points for the base)."""
    if values.step == 0:
        return dict(table.base)
    return table.by_config[(values.arm, values.lr, values.step)]


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """(coefficients, residual sum of squares) of y ~ 1 + x (x: [n] or [n, k])."""
    design = np.column_stack([np.ones(len(y)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return coef, float(resid @ resid)


def _r2_and_partial(kl: np.ndarray, damage: np.ndarray | None, forgetting: np.ndarray) -> tuple[float, float, float]:
    """(R^2 of forgetting on KL, slope, partial R^2 of damage given KL or NaN)."""
    tss = float(((forgetting - forgetting.mean()) ** 2).sum())
    if tss == 0 or np.ptp(kl) == 0:
        return math.nan, math.nan, math.nan
    coef, rss_kl = _least_squares(kl, forgetting)
    r2 = 1 - rss_kl / tss
    partial = math.nan
    if damage is not None and np.ptp(damage) > 0 and rss_kl > 0:
        _, rss_both = _least_squares(np.column_stack([kl, damage]), forgetting)
        partial = (rss_kl - rss_both) / rss_kl
    return r2, float(coef[1]), partial


def forgetting_predictors(table: PointTable, n_boot: int = 1000, seed: int = 0, arm: str | None = None) -> dict:
    """Forgetting (mean accuracy points lost over prior tasks, net or losses only as ``table.retention`` reads
    retention) regressed on forward KL across every point (every
    checkpoint of every run and seed, the bases included), and the partial R^2 of the circuit's damage beyond KL;
    intervals from resampling whole runs. ``arm``: that arm's points only (its bases included)."""
    runs: dict[tuple[str, float, int], list[Point]] = {}
    for p in table.points:
        if p.step > 0 and (arm is None or p.arm == arm):
            runs.setdefault((p.arm, p.lr, p.seed), []).append(p)
    keys = sorted(runs)

    def rows(chosen: list[tuple[str, float, int]]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        pts = [p for k in chosen for p in runs[k]] + [table.base[s] for s in table.seeds]
        kl = np.array([p.kl_forward for p in pts])
        forgetting = np.array([_forgetting(table, p) for p in pts])
        damage = None
        if all(p.c0_logp for p in pts):
            damage = np.array([_damage(table, p) for p in pts])
        return kl, damage, forgetting

    kl, damage, forgetting = rows(keys)
    r2, slope, partial = _r2_and_partial(kl, damage, forgetting)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot if keys else 0):
        chosen = [keys[i] for i in rng.integers(0, len(keys), len(keys))]
        reps.append(_r2_and_partial(*rows(chosen)))
    return {
        "n_points": len(kl),
        "n_runs": len(keys),
        "r2_kl": _stat(r2, [r[0] for r in reps]),
        "slope_per_nat": _stat(slope, [r[1] for r in reps]),
        "partial_r2_circuit": _stat(partial, [r[2] for r in reps]),
        "points": [{"kl": float(k), "forgetting": float(f)} for k, f in zip(kl, forgetting)],
    }


def _forgetting(table: PointTable, p: Point) -> float:
    """Mean over prior tasks of the accuracy points lost against the base: net (``ratio``: a prompt newly right
    offsets one lost) or losses only (``kept``: the share of prompts the base had right and ``p`` has not)."""
    base = table.base[p.seed]
    if table.retention == "kept":
        return float(np.mean([(base.prior_correct[t] * (1 - p.prior_correct[t])).mean() for t in table.tasks]))
    return float(np.mean([base.prior_correct[t].mean() - p.prior_correct[t].mean() for t in table.tasks]))


def _damage(table: PointTable, p: Point) -> float:
    """Mean over tasks of the base's mean log p(answer) minus the base's with C0's outputs from ``p`` (nats)."""
    base = table.base[p.seed]
    return float(np.mean([base.prior_logp[t].mean() - p.c0_logp[t].mean() for t in table.tasks]))


def cheapest(
    table: PointTable, target_accuracy: float, retention_floor: float, arms: Sequence[str] | None = None
) -> list[dict]:
    """The configurations (mean over seeds) that reach ``target_accuracy`` while keeping every prior task's
    retention at or above ``retention_floor``, cheapest training time first."""
    draw = identity_draw(table.seeds, table.tasks)
    out = []
    for arm in arms or table.arms:
        for v in table.values(draw, arm):
            if v.accuracy >= target_accuracy and all(v.retention[t] >= retention_floor for t in table.tasks):
                seconds = float(np.mean([table.by_config[(v.arm, v.lr, v.step)][s].seconds for s in table.seeds]))
                out.append(
                    {
                        "arm": v.arm,
                        "lr": v.lr,
                        "step": v.step,
                        "accuracy": v.accuracy,
                        "retention": v.retention,
                        "seconds": seconds,
                    }
                )
    return sorted(out, key=lambda r: (r["seconds"], -r["accuracy"]))


def reward_signal(zero_share: Sequence[float], mean_reward: Sequence[float | None]) -> dict[str, float | None]:
    """What RL's groups without reward variance were, over a run's steps (means over steps; None without steps).

    A group of completions all scored alike carries no learning signal; it is either all wrong (the model never
    finds the answer: the failure the literature's regime avoids) or all right (the prompt is learned). Per step,
    with z the share of such groups and r the mean reward over all completions, the all-wrong share w satisfies
    w <= z and w <= 1 - r (the other groups' mean reward is at most 1), so ``all_wrong_at_most`` is the mean of
    min(z, 1 - r) and ``all_right_at_least`` that of z - min(z, 1 - r) (exact when the step's rewards are all 0
    or 1 and the other groups are all right; a bound otherwise). Steps without a logged reward count only in
    ``zero_signal_share``.
    """
    if not zero_share:
        return {"zero_signal_share": None, "all_wrong_at_most": None, "all_right_at_least": None}
    wrong = [min(z, 1.0 - r) for z, r in zip(zero_share, mean_reward, strict=True) if r is not None]
    right = [z - min(z, 1.0 - r) for z, r in zip(zero_share, mean_reward, strict=True) if r is not None]
    return {
        "zero_signal_share": float(np.mean(zero_share)),
        "all_wrong_at_most": float(np.mean(wrong)) if wrong else None,
        "all_right_at_least": float(np.mean(right)) if right else None,
    }


StopReason = Literal["plateau", "reward saturated"]
"""Why a frontier run ended before its step budget (:func:`plateaued`, :func:`reward_saturated`)."""


def plateaued(history: Sequence[tuple[int, float]], patience: int, min_gain: float, min_steps: int = 0) -> bool:
    """Whether a run's held-out target accuracy has stopped rising: at step >= ``min_steps``, the best of its last
    ``patience`` checkpoints is less than ``min_gain`` above the best before them. ``history``: (step, accuracy)
    of every checkpoint so far, step 0 first. ``patience`` 0 never stops."""
    if patience <= 0 or len(history) <= patience or history[-1][0] < min_steps:
        return False
    accuracies = [a for _, a in history]
    return max(accuracies[-patience:]) < max(accuracies[:-patience]) + min_gain


def reward_saturated(
    trained_zero_share: Sequence[float], window: int, limit: float | None, step: int, min_steps: int = 0
) -> bool:
    """Whether an RL run's training reward has saturated: at step >= ``min_steps``, over its last ``window`` steps
    more than ``limit`` of the groups it trained on, on average, carried no reward signal (every completion of a
    group rewarded alike: zero advantage, nothing to learn from).  ``trained_zero_share``: [steps] that share per
    optimizer step so far (``frac_trained_zero_std`` under dynamic sampling, else ``frac_reward_zero_std``);
    ``step``: the step just checkpointed.  ``limit`` None never stops; neither do fewer than ``window`` steps."""
    if limit is None or step < min_steps or len(trained_zero_share) < window:
        return False
    return float(np.mean(trained_zero_share[-window:])) > limit
