"""Minimum-cost assignment of tracks to detections (the Hungarian method).

scipy.optimize.linear_sum_assignment solves the same problem, but importing scipy.optimize
holds the GIL through a long stretch of the faces stage's start in every run, while the model
loads beside it; a tracker's matrices have a few rows and columns, small work for the
shortest-augmenting-path method below.
"""

from __future__ import annotations

import numpy as np

__all__ = ["min_cost_assignment"]


def min_cost_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment of the N×M matrix `cost` (finite values):
    min(N, M) pairs, each row and column at most once, rows ascending; as
    scipy.optimize.linear_sum_assignment returns it (among equal-cost assignments either may
    pick another)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"the cost matrix must have two dimensions, not {cost.ndim}")
    if not np.isfinite(cost).all():
        raise ValueError("the cost matrix must be finite")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    rows_of = _assign_rows(cost)  # column -> its row, or -1
    cols = np.flatnonzero(rows_of >= 0)
    rows = rows_of[cols]
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order], cols[order]


def _assign_rows(cost: np.ndarray) -> np.ndarray:
    """For N ≤ M: each column's row in a minimum-cost assignment of every row, or -1.

    Rows join one at a time; each joins along a shortest augmenting path in the reduced costs
    cost[i, j] - u[i] - v[j] (Dijkstra over the columns), and the dual potentials u, v keep every
    reduced cost non-negative, so the assignment stays optimal after each row (Kuhn-Munkres,
    O(N² M)). Column index m is a virtual start column; arrays are sized m + 1 for it.
    """
    n, m = cost.shape
    start = m
    u = np.zeros(n)
    v = np.zeros(m + 1)
    row_of = np.full(m + 1, -1)  # the row each column holds
    for row in range(n):
        row_of[start] = row
        column = start
        distance = np.full(m, np.inf)  # shortest reduced path cost to each free column
        previous = np.zeros(m, dtype=int)  # the column before it on that path
        done = np.zeros(m + 1, dtype=bool)
        while True:
            done[column] = True
            current = row_of[column]
            reduced = cost[current] - u[current] - v[:m]
            shorter = ~done[:m] & (reduced < distance)
            distance[shorter] = reduced[shorter]
            previous[shorter] = column
            open_distance = np.where(done[:m], np.inf, distance)
            nearest = int(np.argmin(open_distance))
            delta = open_distance[nearest]
            u[row_of[done]] += delta
            v[done] -= delta
            distance[~done[:m]] -= delta
            column = nearest
            if row_of[column] < 0:
                break
        while column != start:  # augment: shift the rows back along the path
            before = previous[column]
            row_of[column] = row_of[before]
            column = before
    return row_of[:m]
