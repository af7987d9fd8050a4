"""The Hungarian algorithm against brute force: every assignment tried on small random matrices."""

from __future__ import annotations

import itertools
import random

import pytest

from corral.evaluation import assign


def best_by_brute_force(weights: list[list[float]]) -> float:
    """The greatest summed weight of a one-to-one pairing, by trying every injection of the shorter
    side into the longer."""
    rows, columns = len(weights), len(weights[0])
    if rows <= columns:
        return max(
            sum(weights[r][c] for r, c in enumerate(perm))
            for perm in itertools.permutations(range(columns), rows)
        )
    return max(
        sum(weights[r][c] for c, r in enumerate(perm))
        for perm in itertools.permutations(range(rows), columns)
    )


def test_the_assignment_is_optimal_on_random_matrices() -> None:
    rng = random.Random(19)
    for trial in range(400):
        rows, columns = rng.randint(1, 6), rng.randint(1, 6)
        integral = trial % 3 == 0  # ties galore
        weights = [
            [float(rng.randint(0, 3)) if integral else rng.uniform(-1, 2) for _ in range(columns)]
            for _ in range(rows)
        ]
        pairs = assign(weights)
        assert len(pairs) == min(rows, columns), weights
        assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs}), weights
        assert all(0 <= r < rows and 0 <= c < columns for r, c in pairs)
        assert pairs == sorted(pairs)
        assert sum(weights[r][c] for r, c in pairs) == pytest.approx(best_by_brute_force(weights)), weights


def test_a_greedy_choice_would_lose() -> None:
    # Taking the largest weight first (0↔0: 10) leaves 1↔1 (0): 10. The best is 0↔1 + 1↔0 = 9 + 9.
    weights = [[10.0, 9.0], [9.0, 0.0]]
    assert assign(weights) == [(0, 1), (1, 0)]


def test_more_rows_than_columns() -> None:
    weights = [[1.0], [5.0], [3.0]]
    assert assign(weights) == [(1, 0)]


def test_empty_and_bad_weights() -> None:
    assert assign([]) == []
    assert assign([[], []]) == []
    with pytest.raises(ValueError, match="rectangular"):
        assign([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="finite"):
        assign([[float("nan")]])
