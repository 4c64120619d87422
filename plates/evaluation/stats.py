"""Uncertainty: bootstrap 95% intervals that resample whole vehicles, and the paired tests of `plates compare`.

Every metric is a ratio of per-answer sums (see :mod:`plates.evaluation.metrics`), so one bootstrap replicate is
a vector of cluster weights: how often each vehicle was drawn. Answers are summed per vehicle once, weights for a
chunk of replicates come from one ``bincount`` of uniform draws, and one matrix product gives every metric of
every replicate; 1,000 replicates of 100,000 answers take a few seconds. Percentile intervals, seeded.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

DEFAULT_REPLICATES = 1000
# Fewer than 100 replicates cannot place a 2.5th/97.5th percentile (one replicate gave an "interval" of a single
# resample that missed the estimate); beyond 100,000 the intervals no longer move, only time and memory grow.
MIN_REPLICATES = 100
MAX_REPLICATES = 100_000
DEFAULT_SEED = 0
LEVEL = 0.95
_CELLS_PER_CHUNK = 4_000_000


def cluster_sums(values: np.ndarray, clusters: list[str] | np.ndarray) -> np.ndarray:
    """Sum the rows of ``values`` (answers x columns) per cluster: clusters x columns, in first-seen order."""
    _, first, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_index=True,
                                  return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    out = np.zeros((len(first), values.shape[1]))
    np.add.at(out, rank[inverse.ravel()], values)
    return out


def _weights(n_clusters: int, replicates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Chunks of bootstrap weights (replicates x clusters): multinomial counts of ``n_clusters`` draws."""
    chunk = max(1, min(replicates, _CELLS_PER_CHUNK // max(1, n_clusters)))
    done = 0
    while done < replicates:
        b = min(chunk, replicates - done)
        draws = rng.integers(0, n_clusters, size=(b, n_clusters))
        draws += (np.arange(b) * n_clusters)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n_clusters).reshape(b, n_clusters).astype(np.float64)
        done += b


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _percentiles(replicates: np.ndarray) -> list[list[float] | None]:
    """Per column: [2.5th, 97.5th] percentile of the finite replicates, or None when there are none."""
    out: list[list[float] | None] = []
    tail = 100 * (1 - LEVEL) / 2
    for column in replicates.T:
        finite = column[np.isfinite(column)]
        if not finite.size:
            out.append(None)
        else:
            lo, hi = np.percentile(finite, [tail, 100 - tail])
            out.append([float(lo), float(hi)])
    return out


def _estimates(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Per column: the metric on the whole sample, ``sum(num) / sum(den)`` (NaN without support)."""
    return _ratios(num.sum(axis=0)[None, :], den.sum(axis=0)[None, :])[0]


def _containing(intervals: list[list[float] | None], estimates: np.ndarray) -> list[list[float] | None]:
    """Widen each interval to hold its own estimate: a percentile interval of a skewed statistic (a rate near 0
    or 1 on few vehicles) can otherwise sit beside the figure it qualifies."""
    out: list[list[float] | None] = []
    for ci, estimate in zip(intervals, estimates):
        if ci is not None and np.isfinite(estimate):
            ci = [min(ci[0], float(estimate)), max(ci[1], float(estimate))]
        out.append(ci)
    return out


def bootstrap_intervals(num: np.ndarray, den: np.ndarray, clusters: list[str], replicates: int = DEFAULT_REPLICATES,
                        seed: int = DEFAULT_SEED) -> list[list[float] | None]:
    """95% percentile intervals of ``sum(num) / sum(den)`` for every column (metric), resampling clusters with
    replacement. None for a metric with no support."""
    return cluster_intervals(cluster_sums(num, clusters), cluster_sums(den, clusters), replicates, seed)


def cluster_intervals(num_c: np.ndarray, den_c: np.ndarray, replicates: int = DEFAULT_REPLICATES,
                      seed: int = DEFAULT_SEED) -> list[list[float] | None]:
    """:func:`bootstrap_intervals` from sums already taken per cluster (clusters x metrics, first-seen order):
    what `plates eval` passes, so that no answers x metrics table is held."""
    rng = np.random.default_rng(seed)
    parts = [_ratios(w @ num_c, w @ den_c) for w in _weights(len(num_c), replicates, rng)]
    out = _containing(_percentiles(np.vstack(parts)), _estimates(num_c, den_c))
    return [None if den_c[:, k].sum() <= 0 else ci for k, ci in enumerate(out)]


def paired_delta(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, clusters: list[str],
                 replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED) -> list[list[float] | None]:
    """95% intervals of B - A per metric when both were scored on the same answers (rows aligned): each replicate
    draws the same vehicles for both models, so what the two share cancels out."""
    sums = [cluster_sums(x, clusters) for x in (num_a, den_a, num_b, den_b)]
    rng = np.random.default_rng(seed)
    parts = [_ratios(w @ sums[2], w @ sums[3]) - _ratios(w @ sums[0], w @ sums[1])
             for w in _weights(len(sums[0]), replicates, rng)]
    return _containing(_percentiles(np.vstack(parts)), _estimates(num_b, den_b) - _estimates(num_a, den_a))


def unpaired_delta(a: tuple[np.ndarray, np.ndarray, list[str]], b: tuple[np.ndarray, np.ndarray, list[str]],
                   replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED
                   ) -> tuple[list[list[float] | None], list[float | None]]:
    """(95% intervals of B - A, two-sided bootstrap p-values) when the reports come from different samples:
    each side is resampled on its own."""
    draws = []
    for offset, (num, den, clusters) in enumerate((a, b)):
        num_c, den_c = cluster_sums(num, clusters), cluster_sums(den, clusters)
        rng = np.random.default_rng([seed, offset])
        draws.append(np.vstack([_ratios(w @ num_c, w @ den_c) for w in _weights(len(num_c), replicates, rng)]))
    deltas = draws[1] - draws[0]
    p_values: list[float | None] = []
    for column in deltas.T:
        finite = column[np.isfinite(column)]
        if not finite.size:
            p_values.append(None)
            continue
        tail = min((finite <= 0).mean(), (finite >= 0).mean())
        p_values.append(float(min(1.0, 2 * tail)))
    estimates = _estimates(b[0], b[1]) - _estimates(a[0], a[1])
    return _containing(_percentiles(deltas), estimates), p_values


def sign_test(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray) -> float:
    """Two-sided exact p-value that A and B are equally good answer by answer: the exact McNemar test on the
    answers where one is right and the other wrong (a sign test on the per-answer scores for metrics that are
    not 0/1, such as character accuracy). 1.0 when no answer differs."""
    from scipy.stats import binomtest

    scored = (den_a > 0) & (den_b > 0)
    a = num_a[scored] / den_a[scored]
    b = num_b[scored] / den_b[scored]
    better, worse = int(np.sum(b > a + 1e-12)), int(np.sum(a > b + 1e-12))
    if better + worse == 0:
        return 1.0
    return float(binomtest(better, better + worse, 0.5).pvalue)


def significant(p_value: float | None, interval: list[float] | None, alpha: float = 1 - LEVEL) -> bool:
    """A difference counts as significant when its p-value is below 5% and its 95% interval excludes zero."""
    if p_value is None or not (p_value < alpha):
        return False
    return interval is None or not (interval[0] <= 0 <= interval[1])
