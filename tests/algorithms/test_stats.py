import numpy as np
import pytest

from forgetlens.analysis.stats import (
    benjamini_hochberg,
    bootstrap_indices,
    paired_bootstrap,
    paired_permutation_pvalues,
)


def test_bootstrap_is_reproducible_and_covers_the_mean():
    x = np.random.default_rng(0).normal(1.0, 1.0, size=200)
    idx = bootstrap_indices(200, 1000, seed=3)
    value, low, high = paired_bootstrap(lambda i: x[i].mean(), idx)
    assert low < value < high and low < 1.0 < high
    assert np.array_equal(idx, bootstrap_indices(200, 1000, seed=3))


def test_ci_width_shrinks_with_more_prompts():
    rng = np.random.default_rng(1)
    widths = []
    for n in (25, 100, 400):
        x = rng.normal(0, 1, size=n)
        _, low, high = paired_bootstrap(lambda i: x[i].mean(), bootstrap_indices(n, 1000, 0))  # noqa: B023
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_ratio_of_means_is_paired():
    rng = np.random.default_rng(2)
    den = rng.normal(2.0, 0.5, size=300)
    num = 0.5 * den + rng.normal(0, 0.01, size=300)  # strongly paired
    value, low, high = paired_bootstrap(lambda i: num[i].mean() / den[i].mean(), bootstrap_indices(300, 1000, 0))
    assert value == pytest.approx(0.5, abs=0.01) and high - low < 0.01


def test_permutation_and_bh():
    rng = np.random.default_rng(4)
    diffs = np.column_stack([rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 60), np.zeros(60)])
    p = paired_permutation_pvalues(diffs, 2000, seed=0)
    assert p[0] < 0.01 and p[1] > 0.01 and p[2] == 1.0
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2]))
    # sorted p: 0.01, 0.03, 0.04, 0.2 -> p*n/rank: 0.04, 0.06, 0.0533, 0.2 -> running min from the top
    assert np.allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.2])


def test_vectorised_circuit_statistics_equal_the_reference():
    from reference_stats import reference_statistics

    from forgetlens.analysis.vulnerability import PromptMeasurements, circuit_statistics

    rng = np.random.default_rng(3)
    n, shape = 30, (3, 4)

    def fake(ties: bool):
        ie = rng.normal(size=(n, *shape))
        if ties:  # exact ties in |ie| exercise the tie-breaking by position
            ie[:, 0, 1] = -ie[:, 0, 0]
        cmap = rng.normal(size=(n, *shape))
        return PromptMeasurements(
            ie=ie,
            te=rng.normal(4, 1, n),
            m_full=rng.normal(4, 1, n),
            m_circuit=rng.normal(3, 1, n),
            m_empty=rng.normal(0, 1, n),
            cmap=cmap,
            cmap_total=cmap * 2,
            drift=rng.random((n, *shape)),
        )

    base, tuned = fake(True), fake(True)
    mask = np.zeros(shape)
    mask[0, :3] = 1
    mask[2, 1] = 1
    weights = mask / 4
    k_grid = list(range(1, 9))
    idx = rng.integers(0, n, size=(5, n))
    fast = circuit_statistics(base, tuned, mask, weights, idx, k_grid)
    for b in range(5):
        slow = reference_statistics(base, tuned, mask, weights, idx[b], k_grid)
        for key, value in slow.items():
            np.testing.assert_allclose(fast[key][b], value, rtol=1e-12, atol=1e-12, err_msg=key)
