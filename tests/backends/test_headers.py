from __future__ import annotations

import pytest

from corral.backends._headers import duration_s, rate_limits
from corral.backends.base import RateLimitInfo


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("2", 2.0), ("", None)],
)
def test_openai_durations(text: str, seconds: float | None) -> None:
    assert duration_s(text) == seconds


def test_openai_headers() -> None:
    info = rate_limits(
        {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": "598",
            "x-ratelimit-reset-requests": "200ms",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-tokens": "400ms",
        }
    )
    assert info == RateLimitInfo(600, 598, 0.2, 150000, 149000, 0.4)


def test_anthropic_headers() -> None:
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    info = rate_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:02Z",
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:00.5+00:00",
        },
        now=now,
    )
    assert info == RateLimitInfo(50, 0, 2.0, 40000, 39000, 0.5)


def test_no_headers_is_none() -> None:
    assert rate_limits({"content-type": "application/json"}) is None
