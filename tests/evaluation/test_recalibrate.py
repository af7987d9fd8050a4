"""Recalibration: an isotonic map fitted on (confidence, right) pairs, applied to new confidences."""

from __future__ import annotations

import random

import pytest

from corral.engine._confidence import Recalibration
from corral.evaluation import fit_recalibration


def test_an_under_confident_model_is_moved_up_to_what_it_gets_right() -> None:
    rng = random.Random(1)
    # Says 0.5, right 95% of the time; says 0.9, right always; says 0.1, right 10%.
    pairs = [(0.5, rng.random() < 0.95, "logprobs") for _ in range(400)]
    pairs += [(0.9, True, "logprobs") for _ in range(200)] + [
        (0.1, rng.random() < 0.1, "logprobs") for _ in range(200)
    ]
    fitted = fit_recalibration(pairs)
    assert set(fitted.points) == {"logprobs"}
    assert fitted.apply("logprobs", 0.5) == pytest.approx(0.95, abs=0.04)
    assert fitted.apply("logprobs", 0.1) == pytest.approx(0.1, abs=0.05)
    assert fitted.apply("logprobs", 0.95) == 1.0
    xs = [x / 100 for x in range(101)]
    mapped = [fitted.apply("logprobs", x) for x in xs]
    assert mapped == sorted(mapped)  # what was surer stays surer
    assert fitted.apply("agreement", 0.3) == 0.3  # no map for the method: as it is


def test_accuracy_that_falls_as_confidence_rises_is_pooled_flat() -> None:
    pairs = [(0.2, True, "m")] * 10 + [(0.8, False, "m")] * 10
    fitted = fit_recalibration(pairs)
    assert fitted.points["m"] == ((0.5, 0.5),)  # one pool: the order of the confidences says nothing


def test_a_map_round_trips_and_a_bad_one_is_refused() -> None:
    recalibration = Recalibration({"logprobs": ((0.1, 0.0), (0.5, 0.9), (0.9, 1.0))})
    assert Recalibration.from_json(recalibration.to_json()) == recalibration
    assert recalibration.apply("logprobs", 0.3) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="must rise"):
        Recalibration.from_json({"version": 1, "methods": {"logprobs": [[0.1, 0.9], [0.5, 0.2]]}})
    with pytest.raises(ValueError, match="not a corral calibration map"):
        Recalibration.from_json({"methods": {}})
