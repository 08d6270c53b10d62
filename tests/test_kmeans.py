import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdc import kmeans


def brute_force_sse(values, k):
    """Minimum SSE over every split of the sorted values into k contiguous runs
    (optimal 1-D clusters are contiguous)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    best = np.inf
    for cuts in itertools.combinations(range(1, x.size), k - 1):
        bounds = (0,) + cuts + (x.size,)
        cost = sum(((x[a:b] - x[a:b].mean()) ** 2).sum() for a, b in zip(bounds, bounds[1:]))
        best = min(best, cost)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=1, max_size=9).map(lambda v: np.array(v) / 4.0),
       st.integers(1, 5))
def test_optimal_matches_brute_force(values, k):
    centroids = kmeans.optimal_kmeans(values, k)
    k_used = min(k, np.unique(values).size)
    assert centroids.size == k_used
    assert kmeans.sse(values, centroids) == pytest.approx(brute_force_sse(values, k_used), abs=1e-9)


def test_optimal_matches_quadratic_dp_on_larger_input():
    rng = np.random.default_rng(3)
    x = np.sort(rng.laplace(size=120))
    W, S1, S2 = (np.concatenate([[0], np.cumsum(a)]) for a in (np.ones_like(x), x, x * x))

    def cost(j, i):
        return S2[i + 1] - S2[j] - (S1[i + 1] - S1[j]) ** 2 / (i + 1 - j)

    d = np.array([cost(0, i) for i in range(x.size)])
    for m in range(1, 6):
        d = np.array([min((d[j - 1] + cost(j, i) for j in range(m, i + 1)), default=np.inf)
                      for i in range(x.size)])
    assert kmeans.sse(x, kmeans.optimal_kmeans(x, 6)) == pytest.approx(d[-1], rel=1e-12)


def test_optimal_is_a_lower_bound_for_every_init():
    rng = np.random.default_rng(0)
    x = rng.laplace(size=3000) * 0.05
    x = x[np.abs(x) > 0.03]  # the gap pruning leaves around zero
    best = kmeans.sse(x, kmeans.optimal_kmeans(x, 16))
    for init in kmeans.INITS:
        c = kmeans.cluster_values(x, 16, init=init, seed=1)
        assert c.size == 16, init  # empty cells are relocated, not lost
        assert kmeans.sse(x, c) >= best - 1e-12


def test_lloyd_reaches_a_fixed_point():
    rng = np.random.default_rng(1)
    x = np.sort(rng.normal(size=500))
    c = kmeans.lloyd(x, np.linspace(x[0], x[-1], 7))
    a = kmeans.assign(x, c)
    np.testing.assert_allclose(c, [x[a == i].mean() for i in range(c.size)])


def test_few_distinct_values_are_the_codebook():
    values = np.array([0.5, -0.25, 0.5, 0.75, -0.25])
    np.testing.assert_array_equal(kmeans.cluster_values(values, 8), [-0.25, 0.5, 0.75])
    np.testing.assert_array_equal(kmeans.optimal_kmeans(values, 8), [-0.25, 0.5, 0.75])


def test_grouped_dp_is_close_to_exact():
    x = np.random.default_rng(2).normal(size=5000)
    exact = kmeans.sse(x, kmeans.optimal_kmeans(x, 8))
    grouped = kmeans.optimal_kmeans(x, 8, max_points=500)
    assert grouped.size == 8
    assert kmeans.sse(x, grouped) == pytest.approx(exact, rel=1e-3)


def test_random_and_kmeanspp_are_seeded():
    x = np.random.default_rng(4).normal(size=400)
    for init in ("random", "kmeans++"):
        np.testing.assert_array_equal(kmeans.initial_centroids(x, 5, init, seed=7),
                                      kmeans.initial_centroids(x, 5, init, seed=7))


def test_bad_input():
    with pytest.raises(ValueError, match="unknown init"):
        kmeans.initial_centroids([1.0, 2.0, 3.0], 2, init="spectral")
    with pytest.raises(ValueError, match="empty"):
        kmeans.cluster_values([], 4)
    with pytest.raises(ValueError, match="non-finite"):
        kmeans.optimal_kmeans([1.0, np.nan], 2)
