"""Matched-level comparisons and seed aggregation on synthetic measurements with known answers."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from forgetlens.analysis.compare import compare_models
from forgetlens.analysis.matched import first_crossing, interpolate, matched_models
from forgetlens.analysis.seeds import aggregate_seeds, seed_group
from forgetlens.analysis.vulnerability import PromptMeasurements
from forgetlens.config.methods import DEFAULT_COMPARISON, Comparison

N, L, H = 40, 2, 3


def fake(rng, cmap_scale):
    ie = rng.normal(size=(N, L, H))
    full = rng.normal(5, 1, size=N)
    cmap = -cmap_scale * np.abs(rng.normal(1, 0.2, size=(N, L, H)))
    return PromptMeasurements(
        ie=ie,
        te=full - 1,
        m_full=full,
        m_circuit=0.9 * full,
        m_empty=np.zeros(N),
        cmap=cmap,
        cmap_total=cmap,
        drift=np.abs(cmap) / 10,
    )


def test_first_crossing():
    assert first_crossing([0.2, 0.4, 0.8], 0.6) == (1, pytest.approx(0.5))
    assert first_crossing([0.5, 0.4], 0.3) == (0, 0.0)
    assert first_crossing([0.2, 0.3], 0.9) is None


def test_interpolate_ends_and_middle():
    rng = np.random.default_rng(0)
    a, b = fake(rng, 1.0), fake(rng, 2.0)
    assert np.array_equal(interpolate(a, b, 0.0).cmap, a.cmap)
    np.testing.assert_allclose(interpolate(a, b, 0.25).cmap, 0.75 * a.cmap + 0.25 * b.cmap)


def test_matched_accuracy_interpolates_between_bracketing_checkpoints():
    rng = np.random.default_rng(1)
    base = fake(rng, 0.0)
    tuned = {"sft@10": fake(rng, 1.0), "sft@20": fake(rng, 2.0), "rl@10": fake(rng, 0.5), "rl@20": fake(rng, 1.0)}
    behaviour = {
        "sft": {
            0: {"target_accuracy": 0.4, "kl_forward": 0.0},
            10: {"target_accuracy": 0.6, "kl_forward": 1.0},
            20: {"target_accuracy": 0.8, "kl_forward": 2.0},
        },
        "rl": {
            0: {"target_accuracy": 0.4, "kl_forward": 0.0},
            10: {"target_accuracy": 0.5, "kl_forward": 0.2},
            20: {"target_accuracy": 0.6, "kl_forward": 0.4},
        },
    }
    matched, levels = matched_models(base, tuned, behaviour, comparisons=[DEFAULT_COMPARISON])
    # common accuracy range 0.4 .. min(0.8, 0.6) = 0.6; level 0.5 is halfway from base to sft@10, at rl@10
    assert levels[""]["@acc:0.5"]["level"] == pytest.approx(0.5)
    np.testing.assert_allclose(matched["sft@acc:0.5"].cmap, 0.5 * tuned["sft@10"].cmap)
    np.testing.assert_allclose(matched["rl@acc:0.5"].cmap, tuned["rl@10"].cmap)
    # KL range 0 .. min(2.0, 0.4); level 0.4 is reached by sft 40 % of the way to step 10
    assert levels[""]["@kl:1"]["sft"] == {"between_steps": [0, 10], "fraction": pytest.approx(0.4)}
    weights = np.full((L, H), 1 / (L * H))
    models = {**tuned, **matched}
    result = compare_models(base, models, np.ones((L, H)), weights, n_boot=50, comparisons=[DEFAULT_COMPARISON])
    v_sft = result["models"]["sft@acc:0.5"]["v_circuit"]["value"]
    assert v_sft == pytest.approx(0.5 * result["models"]["sft@10"]["v_circuit"]["value"])
    assert "@acc:0.5" in result["dcv"]


def test_no_accuracy_match_when_a_run_never_improves():
    rng = np.random.default_rng(2)
    tuned = {"sft@10": fake(rng, 1.0), "rl@10": fake(rng, 1.0)}
    flat = {0: {"target_accuracy": 0.4, "kl_forward": 0.0}, 10: {"target_accuracy": 0.4, "kl_forward": 0.3}}
    rising = {0: {"target_accuracy": 0.4, "kl_forward": 0.0}, 10: {"target_accuracy": 0.9, "kl_forward": 1.0}}
    behaviour = {"sft": rising, "rl": flat}
    matched, levels = matched_models(fake(rng, 0.0), tuned, behaviour, comparisons=[DEFAULT_COMPARISON])
    assert not any("@acc" in k for k in matched) and "@kl:1" in levels[""]


def test_seed_aggregation_is_a_t_interval():
    assert seed_group("sft-s12@40") == ("sft@40", 12) and seed_group("-s1@acc:0.5") == ("@acc:0.5", 1)
    assert seed_group("sft@40") is None
    entries = {f"sft-s{s}@40": {"v_circuit": {"value": v}} for s, v in enumerate([0.1, 0.2, 0.4])}
    agg = aggregate_seeds(entries, keys=("v_circuit",))["sft@40"]["v_circuit"]
    x = np.array([0.1, 0.2, 0.4])
    half = student_t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert agg["value"] == pytest.approx(x.mean()) and agg["ci_high"] == pytest.approx(x.mean() + half)
    assert agg["per_seed"] == [0.1, 0.2, 0.4]


def test_claim_verdicts_separate_size_from_significance():
    from forgetlens.analysis.summary import claim_verdict

    assert claim_verdict({"value": 0.05, "ci_low": 0.02, "ci_high": 0.08}) == "held"
    assert claim_verdict({"value": -0.05, "ci_low": -0.08, "ci_high": -0.02}) == "reversed"
    assert claim_verdict({"value": 0.0004, "ci_low": 0.0001, "ci_high": 0.0008}) == "negligible"
    assert claim_verdict({"value": 0.05, "ci_low": -0.01, "ci_high": 0.1}) == "inconclusive"
    assert claim_verdict({"value": 0.05}) == "inconclusive"
    assert claim_verdict({"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}) == "negligible"  # nothing differed at all


def test_a_declared_comparison_decides_what_dcv_and_the_matched_levels_pair():
    """replay:rl compares replay with rl (keys prefixed by the comparison, matched levels keyed by its methods);
    the sft models beside them are in no pair unless sft:rl is declared too."""
    rng = np.random.default_rng(3)
    base = fake(rng, 0.0)
    tuned = {f"{m}-s0@10": fake(rng, scale) for m, scale in (("sft", 2.0), ("replay", 1.0), ("rl", 0.5))}
    rising = {0: {"target_accuracy": 0.4, "kl_forward": 0.0}, 10: {"target_accuracy": 0.8, "kl_forward": 1.0}}
    behaviour = {"sft-s0": rising, "replay-s0": rising, "rl-s0": rising}
    replay_rl = Comparison("replay", "rl")
    matched, levels = matched_models(base, tuned, behaviour, comparisons=[replay_rl])
    assert set(levels) == {"replay:rl:-s0"} and set(levels["replay:rl:-s0"]["@acc:1"]) == {"level", "replay", "rl"}
    assert not any(k.startswith("sft") for k in matched)
    weights = np.full((L, H), 1 / (L * H))
    models = {**tuned, **matched}
    only = compare_models(base, models, np.ones((L, H)), weights, n_boot=50, comparisons=[replay_rl])
    assert set(only["dcv"]) == {
        "replay:rl:-s0@10",
        "replay:rl:-s0@acc:0.5",
        "replay:rl:-s0@acc:1",
        "replay:rl:-s0@kl:0.5",
        "replay:rl:-s0@kl:1",
    }
    both = compare_models(
        base, models, np.ones((L, H)), weights, n_boot=50, comparisons=[replay_rl, DEFAULT_COMPARISON]
    )
    assert "-s0@10" in both["dcv"] and both["dcv"]["replay:rl:-s0@10"] == only["dcv"]["replay:rl:-s0@10"]
    v = {m: only["models"][f"{m}-s0@10"]["v_circuit"]["value"] for m in ("replay", "rl")}
    assert only["dcv"]["replay:rl:-s0@10"]["v_circuit"]["value"] == pytest.approx(v["replay"] - v["rl"])
