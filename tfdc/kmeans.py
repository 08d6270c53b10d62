"""One-dimensional k-means for weight sharing: initialisations, Lloyd, exact DP.

All functions work on a 1-D array of values (a layer's nonzero weights) and are
plain NumPy, vectorised so that a 235k-weight layer clusters in seconds.

Initialisations (Han et al., Deep Compression, sec. 3.1 and Fig. 4):

* `'linear'`  -- k points evenly spaced over [min, max] (the paper's default).
* `'density'` -- k quantiles of the values (evenly spaced on the CDF's y axis).
* `'random'`  -- Forgy: k distinct values drawn uniformly from the data.
* `'kmeans++'` -- D^2 sampling (Arthur & Vassilvitskii) with multiplicities.
* `'optimal'` -- the globally optimal k-means by dynamic programming
  (`optimal_kmeans`, Wang & Song's Ckmeans.1d.dp recurrence, each DP row
  solved with the monotone divide-and-conquer optimisation, O(k n log n)).

Every initialisation is followed by Lloyd iterations (`lloyd`), which run on
the sorted unique values with multiplicities: an assignment step is a
`searchsorted` of the centroid midpoints, an update step a difference of
cumulative sums.

Exactness of `optimal_kmeans`: the DP runs on the sorted *unique* values with
their multiplicities, which is exact (equal values always share a cluster in
some optimal solution). If there are more than `max_points` unique values
(default 2**15 = 32,768: the pruned LeNet layers stay exact), consecutive unique values
are first merged into `max_points` equal-count groups; the DP is then exact
over the partitions that do not split a group (the within-group spread is a
constant of the objective), and Lloyd iterations on the full data polish the
result.
"""

import numpy as np

INITS = ("linear", "density", "random", "kmeans++", "optimal")
# Bits per shared value that tfdc.ClusteredFineTuning (and `tfdc demo --bits`)
# accept: 2 to 256 shared values per kernel. Here, in a module without
# TensorFlow, so that the command line checks the same range.
BITS_RANGE = (1, 8)


def _unique_weighted(values):
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("cannot cluster an empty set of values")
    if not np.all(np.isfinite(values)):
        raise ValueError("cannot cluster non-finite values (NaN or inf)")
    return np.unique(values, return_counts=True)


def _prefix(x, w):
    z = np.zeros(1)
    return (np.concatenate([z, np.cumsum(w)]),
            np.concatenate([z, np.cumsum(w * x)]),
            np.concatenate([z, np.cumsum(w * x * x)]))


def sse(values, centroids):
    """Sum of squared distances of `values` to their nearest centroid."""
    values = np.asarray(values, dtype=np.float64).ravel()
    c = np.sort(np.asarray(centroids, dtype=np.float64))
    return float(np.sum((values - c[assign(values, c)]) ** 2))


def assign(values, centroids):
    """Index of the nearest centroid for each value; `centroids` must be
    sorted ascending. Ties go to the lower centroid."""
    c = np.asarray(centroids, dtype=np.float64)
    mid = (c[:-1] + c[1:]) / 2
    return np.searchsorted(mid, np.asarray(values, dtype=np.float64), side="left")


def lloyd(values, centroids, max_iter=300, counts=None, relocate_empty=True):
    """Lloyd iterations in 1-D until the assignment stops changing.

    Args:
        values: sorted ascending values (e.g. unique values).
        centroids: initial centroids (any order).
        max_iter: cap on the number of iterations.
        counts: optional multiplicity of each value.
        relocate_empty: a centroid whose cell holds no value (e.g. a linear
            init centroid inside the gap that pruning leaves around 0) is
            moved to the member farthest from its centroid in the cluster with
            the largest squared error, as scikit-learn's KMeans does;
            otherwise it is dropped.

    Returns:
        Sorted centroids, at most as many as given.
    """
    x = np.asarray(values, dtype=np.float64)
    w = np.ones_like(x) if counts is None else np.asarray(counts, dtype=np.float64)
    W, S1, S2 = _prefix(x, w)
    c = np.unique(np.asarray(centroids, dtype=np.float64))
    prev_b = None
    for _ in range(max_iter):
        mid = (c[:-1] + c[1:]) / 2
        b = np.concatenate([[0], np.searchsorted(x, mid, side="right"), [x.size]])
        if prev_b is not None and np.array_equal(b, prev_b):
            break  # c already holds the means of this assignment
        n = W[b[1:]] - W[b[:-1]]
        keep = n > 0
        s1 = (S1[b[1:]] - S1[b[:-1]])[keep]
        means = s1 / n[keep]
        new = np.zeros(0)
        empty = int((~keep).sum())
        if relocate_empty and empty:
            err = (S2[b[1:]] - S2[b[:-1]])[keep] - s1 * means
            first, last = b[:-1][keep], b[1:][keep] - 1
            worst = np.argsort(-err)[:empty]
            worst = worst[err[worst] > 0]
            far = np.where(means[worst] - x[first[worst]] > x[last[worst]] - means[worst],
                           x[first[worst]], x[last[worst]])
            new = far
        c = np.unique(np.concatenate([means, new]))
        prev_b = b if c.size == b.size - 1 and not new.size else None
    return c


def _segment_argmin(vals, starts):
    """First index of the minimum of `vals` within each segment; segments are
    contiguous and begin at `starts` (each non-empty)."""
    seg_min = np.minimum.reduceat(vals, starts)
    lengths = np.diff(np.append(starts, vals.size))
    hits = np.flatnonzero(vals == np.repeat(seg_min, lengths))
    seg_of_hit = np.searchsorted(starts, hits, side="right") - 1
    return hits[np.searchsorted(seg_of_hit, np.arange(starts.size), side="left")]


def optimal_kmeans(values, k, max_points=2 ** 15):
    """Globally optimal 1-D k-means (minimum within-cluster sum of squares).

    Args:
        values: the values to cluster (any shape, any order).
        k: number of clusters; clipped to the number of distinct values.
        max_points: above this many distinct values the data is grouped first
            (see the module docstring for what stays exact).

    Returns:
        The sorted centroids (length `min(k, #distinct values)`).
    """
    ux, uc = _unique_weighted(values)
    k = int(min(k, ux.size))
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    x, w = ux, uc.astype(np.float64)
    grouped = x.size > max_points
    if grouped:
        edges = np.linspace(0, x.size, max_points + 1).astype(np.int64)
        Wg, S1g, _ = _prefix(x, w)
        w = Wg[edges[1:]] - Wg[edges[:-1]]
        x = (S1g[edges[1:]] - S1g[edges[:-1]]) / w
    n = x.size
    W, S1, S2 = _prefix(x, w)

    def cost(j, i):  # SSE of points j..i inclusive, vectorised
        ww = W[i + 1] - W[j]
        s = S1[i + 1] - S1[j]
        return np.maximum(S2[i + 1] - S2[j] - s * s / ww, 0.0)

    idx = np.arange(n)
    prev = cost(np.zeros(n, dtype=np.int64), idx)  # D[1][i]
    back = np.zeros((k, n), dtype=np.int32)  # start index of the last cluster
    for m in range(1, k):
        # D[m][i] = min_{m <= j <= i} D[m-1][j-1] + cost(j, i); the argmin is
        # monotone in i, so each recursion level of divide-and-conquer touches
        # O(n) candidates. All segments of a level are processed at once.
        cur = np.full(n, np.inf)
        arg = np.zeros(n, dtype=np.int64)
        lo = np.array([m]); hi = np.array([n - 1])
        olo = np.array([m]); ohi = np.array([n - 1])
        while lo.size:
            mid = (lo + hi) // 2
            top = np.minimum(mid, ohi)
            length = top - olo + 1
            first = np.cumsum(length) - length
            # candidate j for every segment, concatenated: olo, olo+1, ..., top
            j = np.arange(int(length.sum())) + np.repeat(olo - first, length)
            i = np.repeat(mid, length)
            vals = prev[j - 1] + cost(j, i)
            best = _segment_argmin(vals, first)
            bj = j[best]
            cur[mid] = vals[best]
            arg[mid] = bj
            left = mid - 1 >= lo
            right = mid + 1 <= hi
            lo, hi, olo, ohi = (np.concatenate([lo[left], mid[right] + 1]),
                                np.concatenate([mid[left] - 1, hi[right]]),
                                np.concatenate([olo[left], bj[right]]),
                                np.concatenate([bj[left], ohi[right]]))
        back[m] = arg
        prev = cur
    # Backtrack the cluster boundaries.
    starts = np.empty(k, dtype=np.int64)
    end = n - 1
    for m in range(k - 1, -1, -1):
        starts[m] = back[m][end] if m > 0 else 0
        end = starts[m] - 1
    stops = np.concatenate([starts[1:], [n]])
    c = (S1[stops] - S1[starts]) / (W[stops] - W[starts])
    if grouped:
        c = lloyd(ux, c, counts=uc, relocate_empty=False)
    return np.sort(c)


def initial_centroids(values, k, init="linear", seed=None):
    """The `init` starting centroids for `values` (k clipped to #distinct)."""
    ux, uc = _unique_weighted(values)
    k = int(min(k, ux.size))
    rng = np.random.default_rng(seed)
    if init == "linear":
        return np.linspace(ux[0], ux[-1], k)
    if init == "density":
        cdf = (np.cumsum(uc) - 0.5 * uc) / uc.sum()
        return np.interp((np.arange(k) + 0.5) / k, cdf, ux)
    if init == "random":
        return np.sort(rng.choice(ux, size=k, replace=False))
    if init == "kmeans++":
        w = uc.astype(np.float64)
        chosen = [rng.choice(ux, p=w / w.sum())]
        d2 = (ux - chosen[0]) ** 2
        for _ in range(1, k):
            p = w * d2
            if p.sum() <= 0:
                break
            c = rng.choice(ux, p=p / p.sum())
            chosen.append(c)
            d2 = np.minimum(d2, (ux - c) ** 2)
        return np.sort(np.array(chosen))
    if init == "optimal":
        return optimal_kmeans(values, k)
    raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def cluster_values(values, k, init="linear", seed=None, max_iter=300):
    """Initialise with `init`, then run Lloyd iterations.

    Returns:
        Sorted centroids; exactly the distinct values when there are at most k.
    """
    ux, uc = _unique_weighted(values)
    if ux.size <= k:
        return ux
    c = initial_centroids(values, k, init, seed)
    return lloyd(ux, c, max_iter=max_iter, counts=uc)
