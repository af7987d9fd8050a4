"""The optimal assignment (the Hungarian algorithm): which output entity is which gold entity.

Kuhn and Munkres' method in its O(n²·m) form with row and column potentials (Jonker–Volgenant's
shortest augmenting paths): each row in turn is added, the cheapest augmenting path to a free
column found by a Dijkstra-like scan over reduced costs, and the potentials moved so that reduced
costs stay non-negative. Pure Python, no dependency: lists of entities in one record are short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["assign"]


def assign(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """The pairs ``(row, column)`` that maximise the summed weight, each row and column used at most
    once: ``min(rows, columns)`` pairs (some may weigh nothing: callers drop those they do not want),
    sorted by row. ``weights`` is rectangular, of finite numbers."""
    rows = len(weights)
    columns = len(weights[0]) if rows else 0
    if any(len(row) != columns for row in weights):
        raise ValueError("assign: the weights are not rectangular")
    if rows == 0 or columns == 0:
        return []
    if not all(math.isfinite(w) for row in weights for w in row):
        raise ValueError("assign: every weight must be a finite number")
    if rows > columns:  # the method adds rows one by one into free columns: fewer rows than columns
        return sorted((r, c) for c, r in _minimise([[-w for w in col] for col in zip(*weights, strict=True)]))
    return sorted(_minimise([[-w for w in row] for row in weights]))


def _minimise(cost: list[list[float]]) -> list[tuple[int, int]]:
    """The assignment of every row (n ≤ m) to a column of least total cost."""
    n, m = len(cost), len(cost[0])
    # 1-based, as in the textbook form: index 0 is the virtual column a row's search starts from.
    u = [0.0] * (n + 1)  # row potentials
    v = [0.0] * (m + 1)  # column potentials
    owner = [0] * (m + 1)  # owner[j]: the row assigned to column j (0: free)
    way = [0] * (m + 1)  # the previous column on the shortest path to j
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        least = [math.inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            costs = cost[i0 - 1]
            ui0 = u[i0]
            delta, j1 = math.inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                reduced = costs[j - 1] - ui0 - v[j]
                if reduced < least[j]:
                    least[j], way[j] = reduced, j0
                if least[j] < delta:
                    delta, j1 = least[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    least[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path: each column on it passes to the row before
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
