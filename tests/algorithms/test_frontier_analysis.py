"""The frontier's analysis (analysis/frontier.py) against planted truth and slow, obvious references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from forgetlens.analysis.frontier import (
    MEAN,
    Point,
    PointTable,
    adaptation_speed,
    cheapest,
    compare_frontiers,
    forgetting_predictors,
    frontier_value,
    identity_draw,
    least_kl,
    matched_levels,
    paired_tests,
    pareto_set,
    plateaued,
    reward_saturated,
    reward_signal,
)
from forgetlens.analysis.stats import mcnemar_p, paired_mean_difference

TASKS = ("induction", "ioi")
N_Q, N_P = 400, 200


def _bits(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    """n outcomes with exactly round(p * n) ones, in a random order (so a planted accuracy is exact)."""
    k = int(round(p * n))
    out = np.zeros(n)
    out[rng.permutation(n)[:k]] = 1
    return out


def _run_points(arm, lr, seed, curve, rng, kl_per_forget=10.0, c0_share=0.0):
    """Points of one planted run: ``curve`` = [(step, target accuracy, prior accuracy)], step 0 excluded."""
    out = []
    for step, acc, prior in curve:
        forgetting = 0.9 - prior
        logp = {t: np.full(N_P, -1.0 - forgetting) for t in TASKS}
        out.append(
            Point(
                arm,
                lr,
                seed,
                step,
                _bits(rng, acc, N_Q),
                {t: _bits(rng, prior, N_P) for t in TASKS},
                logp,
                {t: np.full(N_P, -1.0 - c0_share * forgetting) for t in TASKS},
                kl_forward=kl_per_forget * forgetting + rng.normal(0, 0.01),
                seconds=10.0 * step,
            )
        )
    return out


def _base(seed, rng):
    return Point(
        "sft",
        0.0,
        seed,
        0,
        _bits(rng, 0.3, N_Q),
        {t: _bits(rng, 0.9, N_P) for t in TASKS},
        {t: np.full(N_P, -1.0) for t in TASKS},
        {t: np.full(N_P, -1.0) for t in TASKS},
    )


def _planted(seeds=(0, 1), rl_keeps=0.1, identical=False):
    """SFT forgets faster than RL as both adapt: at the same target accuracy RL's prior accuracy is ``rl_keeps``
    higher (identical: RL is SFT under another name)."""
    rng = np.random.default_rng(0)
    points = []
    for seed in seeds:
        points.append(_base(seed, rng))
        for lr, speed in ((1e-5, 1.0), (3e-5, 2.0)):  # checkpoints dense enough that noise moves F(a) little
            sft = [(4 * k, min(0.3 + 0.04 * speed * k, 0.9), 0.9 - 0.03 * speed * k) for k in range(1, 13)]
            points += _run_points("sft", lr, seed, sft, rng)
            keep = 0.0 if identical else rl_keeps
            rl = [(s, a, min(p + keep, 0.9)) for s, a, p in sft]
            points += _run_points("rl", lr, seed, rl, rng)
    return points


def test_frontier_value_is_the_brute_force_upper_envelope():
    table = PointTable(_planted())
    draw = identity_draw(table.seeds, table.tasks)
    base = table.base_values(draw)
    values = table.values(draw, "sft")
    for level in np.linspace(0.2, 1.0, 17):
        expected = max((v.retention[MEAN] for v in [base, *values] if v.accuracy >= level), default=math.nan)
        got = frontier_value(values, base, level)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
    front = pareto_set([base, *values])
    for p, q in itertools.product(front, [base, *values]):  # nothing dominates a Pareto point
        assert not (q.accuracy >= p.accuracy and q.retention[MEAN] > p.retention[MEAN] and q is not p) or (
            q.accuracy == p.accuracy
        )


def test_a_planted_dominance_is_recovered_with_an_interval_excluding_zero():
    table = PointTable(_planted(rl_keeps=0.15))
    result = compare_frontiers(table, ["sft", "rl"], [0.6, 0.9], n_boot=200, seed=1)
    assert result["levels"]
    for name in result["levels"]:
        stat = result["difference"]["rl-sft"][name][MEAN]
        assert stat["value"] == pytest.approx(0.15 / 0.9, abs=0.05)  # 0.15 accuracy points of the base's 0.9
        assert stat["ci_low"] > 0
    reverse = compare_frontiers(table, ["rl", "sft"], [0.6], n_boot=100, seed=1)  # the arms' order is the sign
    assert reverse["difference"]["sft-rl"]["f=0.6"][MEAN]["ci_high"] < 0


def test_identical_arms_differ_by_exactly_zero():
    rng = np.random.default_rng(3)
    points = [_base(0, rng)]
    curve = [(8 * k, 0.3 + 0.1 * k, 0.9 - 0.1 * k) for k in range(1, 5)]
    for p in _run_points("sft", 1e-5, 0, curve, rng):
        points += [p, Point("rl", *(getattr(p, f) for f in list(Point.__dataclass_fields__)[1:]))]
    table = PointTable(points)
    result = compare_frontiers(table, ["sft", "rl"], [0.5, 0.9], n_boot=100, seed=0)
    for name in result["levels"]:
        for stat in result["difference"]["rl-sft"][name].values():
            assert stat["value"] == 0 and stat["ci_low"] == 0 and stat["ci_high"] == 0
    tests = paired_tests(table, ["sft", "rl"], result["levels"], n_boot=50, seed=0)
    for by_task in tests["rl-sft"].values():
        for test in by_task.values():
            assert test["mcnemar_top1"] == {"only_a": 0, "only_b": 0, "p": 1.0}
            assert test["logp_answer"]["value"] == 0


def test_matched_levels_sit_between_the_base_and_what_both_reach():
    table = PointTable(_planted())
    levels = matched_levels(table, [0.5, 1.0], ["sft", "rl"])
    base = table.base_values(identity_draw(table.seeds, table.tasks)).accuracy
    assert levels["f=0.5"] == pytest.approx(base + 0.5 * (levels["f=1"] - base))
    assert levels["f=1"] == pytest.approx(0.9)


def test_mcnemar_matches_the_exact_binomial_test():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    a, b = rng.random(200) < 0.6, rng.random(200) < 0.5
    result = mcnemar_p(a, b)
    n = result["only_a"] + result["only_b"]
    assert result["p"] == pytest.approx(binomtest(result["only_a"], n, 0.5).pvalue)
    assert mcnemar_p(a, a)["p"] == 1.0


def test_paired_mean_difference_sees_a_planted_shift_and_not_its_absence():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 300)
    shifted = paired_mean_difference(a, a + 0.3 + rng.normal(0, 0.2, 300), n_boot=500)
    assert shifted["ci_low"] > 0.2 and shifted["p"] < 0.01
    same = paired_mean_difference(a, a + rng.normal(0, 0.2, 300), n_boot=500)
    assert same["ci_low"] < 0 < same["ci_high"]


def test_r2_on_kl_and_the_circuit_partial_r2_match_least_squares_references():
    points = _planted()
    table = PointTable(points)
    result = forgetting_predictors(table, n_boot=50, seed=0)
    kl = np.array([p["kl"] for p in result["points"]])
    forgetting = np.array([p["forgetting"] for p in result["points"]])
    slope, intercept = np.polyfit(kl, forgetting, 1)
    r2 = 1 - ((forgetting - (slope * kl + intercept)) ** 2).sum() / ((forgetting - forgetting.mean()) ** 2).sum()
    assert result["r2_kl"]["value"] == pytest.approx(r2)
    assert result["slope_per_nat"]["value"] == pytest.approx(slope)
    assert result["r2_kl"]["value"] > 0.9  # planted: KL = 10 x forgetting + noise


def test_circuit_damage_adds_what_kl_misses():
    """Planted: forgetting is KL's for half the runs and exactly the circuit's damage beyond it for the others."""
    rng = np.random.default_rng(5)
    points = [_base(0, rng)]
    for i, lr in enumerate((1e-5, 2e-5, 3e-5, 4e-5)):
        curve = [(8 * k, 0.3 + 0.1 * k, 0.9 - 0.05 * k * (1 + i)) for k in range(1, 5)]
        points += _run_points("sft", lr, 0, curve, rng, kl_per_forget=10.0 if i % 2 else 2.0, c0_share=1.0)
    table = PointTable(points)
    with_circuit = forgetting_predictors(table, n_boot=20, seed=0)
    assert with_circuit["partial_r2_circuit"]["value"] > 0.5
    for p in table.points:  # the circuit carries nothing: no partial R^2 (undefined: no variation)
        p.c0_logp.update({t: p.prior_logp[t] * 0 - 1.0 for t in TASKS})
    flat = forgetting_predictors(PointTable(table.points), n_boot=20, seed=0)
    assert math.isnan(flat["partial_r2_circuit"]["value"])


def test_cheapest_pick_and_speed_read_the_planted_curves():
    table = PointTable(_planted(rl_keeps=0.1))
    picks = cheapest(table, 0.5, 0.85)
    assert picks and all(p["accuracy"] >= 0.5 for p in picks)
    assert picks == sorted(picks, key=lambda p: (p["seconds"], -p["accuracy"]))
    assert all(p["arm"] == "rl" for p in picks)  # SFT's configurations at 0.5 have lost more than 15 %
    speed = adaptation_speed(table, ["sft", "rl"], {"a": 0.7})
    assert speed["sft"]["a"]["step"] == 20 and speed["sft"]["a"]["lr"] == 3e-5  # 0.3 + 0.08 x 5 = 0.7


@pytest.mark.parametrize(
    "history, expected",
    [
        ([(0, 0.3), (8, 0.5), (16, 0.6), (24, 0.61), (32, 0.6), (40, 0.605)], True),
        ([(0, 0.3), (8, 0.5), (16, 0.6), (24, 0.61), (32, 0.6), (40, 0.63)], False),
        ([(0, 0.3), (8, 0.3), (16, 0.3)], False),  # too few checkpoints for patience 3
        ([(0, 0.3), (8, 0.31), (16, 0.3), (24, 0.3)], True),  # never rose: stops
    ],
)
def test_plateau_rule(history, expected):
    assert plateaued(history, patience=3, min_gain=0.02) is expected
    assert plateaued(history, patience=0, min_gain=0.02) is False
    assert plateaued(history, patience=3, min_gain=0.02, min_steps=10_000) is False


@pytest.mark.parametrize(
    "shares, step, expected",
    [
        ([0.0, 0.2, 0.6, 0.6, 0.6, 0.6], 6, True),  # the last 4 average 0.6 > 0.5
        ([0.9, 0.9, 0.5, 0.5, 0.5, 0.5], 6, False),  # exactly 0.5 over the window: not more than the limit
        ([0.0, 0.0, 1.0, 1.0, 1.0, 0.0], 6, True),  # 0.75
        ([1.0, 1.0, 1.0], 3, False),  # fewer steps than the window
        ([0.0, 0.2, 0.6, 0.6, 0.6, 0.6], 4, False),  # before min_steps (5)
    ],
)
def test_reward_saturation_rule(shares, step, expected):
    assert reward_saturated(shares, window=4, limit=0.5, step=step, min_steps=5) is expected
    assert reward_saturated(shares, window=4, limit=None, step=step) is False
    assert reward_saturated([1.0] * 4, window=4, limit=0.0, step=4) is True
    assert reward_saturated([0.0] * 4, window=4, limit=0.0, step=4) is False


def test_reward_signal_bounds_the_never_rewarded_groups():
    """Groups of 8 planted step by step: the bounds hold for every planting, and are the truth when every group
    is all right or all wrong."""
    rng = np.random.default_rng(0)
    zero, reward, true_wrong = [], [], []
    for _ in range(50):
        groups = rng.integers(0, 9, size=8)  # correct completions in each of 8 groups of 8
        zero.append(float(np.mean((groups == 0) | (groups == 8))))
        reward.append(float(groups.sum() / 64))
        true_wrong.append(float(np.mean(groups == 0)))
    signal = reward_signal(zero, reward)
    assert signal["zero_signal_share"] == pytest.approx(np.mean(zero))
    assert signal["all_wrong_at_most"] >= np.mean(true_wrong) - 1e-12
    assert signal["all_right_at_least"] <= np.mean(zero) - np.mean(true_wrong) + 1e-12
    # half the groups never rewarded, the rest all right: the bound is the truth
    exact = reward_signal([1.0, 1.0], [0.5, 0.5])
    assert exact == {"zero_signal_share": 1.0, "all_wrong_at_most": 0.5, "all_right_at_least": 0.5}
    assert reward_signal([], [])["zero_signal_share"] is None


def test_kept_counts_losses_only_and_ratio_counts_gains_too():
    """A tuned model that fixes 20 of the base's wrong prompts and breaks 10 of its right ones: the ratio sees a
    net gain, ``kept`` sees the 10 lost of the base's 100 right; the base itself keeps all."""
    base_right = np.r_[np.ones(100), np.zeros(100)]  # [prompts]
    tuned_right = base_right.copy()
    tuned_right[:10] = 0  # broken
    tuned_right[100:120] = 1  # fixed
    target = np.zeros(10)
    base = Point("sft", 0.0, 0, 0, target, {"t": base_right})
    tuned = Point("sft", 1e-5, 0, 8, target, {"t": tuned_right})
    draw = identity_draw([0], ["t"])
    ratio = PointTable([base, tuned], "ratio").values(draw, "sft")[0].retention["t"]
    kept_table = PointTable([base, tuned], "kept")
    assert ratio == pytest.approx(110 / 100)
    assert kept_table.values(draw, "sft")[0].retention["t"] == pytest.approx(90 / 100)
    assert kept_table.base_values(draw).retention["t"] == 1.0


def test_forgetting_follows_the_retention_kind():
    """The same planted prompts: net forgetting (ratio) is offset by the fixed prompts, losses-only (kept) is not."""
    base_right = np.r_[np.ones(100), np.zeros(100)]  # [prompts]
    tuned_right = base_right.copy()
    tuned_right[:10] = 0
    tuned_right[100:120] = 1
    base = Point("sft", 0.0, 0, 0, np.zeros(10), {"t": base_right}, kl_forward=0.0)
    tuned = Point("sft", 1e-5, 0, 8, np.zeros(10), {"t": tuned_right}, kl_forward=1.0)
    net = forgetting_predictors(PointTable([base, tuned], "ratio"), n_boot=1)["points"]
    losses = forgetting_predictors(PointTable([base, tuned], "kept"), n_boot=1)["points"]
    assert net[0]["forgetting"] == pytest.approx(-10 / 200) and losses[0]["forgetting"] == pytest.approx(10 / 200)
    assert net[-1]["forgetting"] == losses[-1]["forgetting"] == 0.0  # the base


def test_least_kl_is_the_smallest_kl_of_the_configurations_reaching_the_level():
    """Brute force over the planted configurations: the least KL among those at or above each level."""
    table = PointTable(_planted())
    draw = identity_draw(table.seeds, table.tasks)
    values = table.values(draw, "rl")
    for level in (0.4, 0.6, 0.8, 0.95):
        reaching = [v.kl_forward for v in values if v.accuracy >= level]
        expected = min(reaching) if reaching else math.nan
        assert least_kl(values, level) == expected or (math.isnan(expected) and math.isnan(least_kl(values, level)))
    comparison = compare_frontiers(table, ["sft", "rl"], [0.5, 0.9], n_boot=20)
    for name, level in comparison["levels"].items():
        assert comparison["least_kl"]["rl"][name]["value"] == least_kl(values, level)
