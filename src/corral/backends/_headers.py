"""Providers' rate-limit headers → :class:`~corral.backends.base.RateLimitInfo`, at the boundary.

OpenAI (and vLLM, LiteLLM and others that copy it):
    x-ratelimit-{limit,remaining}-{requests,tokens}, x-ratelimit-reset-{requests,tokens}
    — resets are durations: "1s", "6m0s", "20ms", "1m30.5s"
Anthropic:
    anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}
    — resets are RFC 3339 times: "2026-11-24T21:40:05Z"
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime

from corral.backends.base import RateLimitInfo

__all__ = ["duration_s", "rate_limits"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def rate_limits(headers: Mapping[str, str], *, now: float | None = None) -> RateLimitInfo | None:
    """What the headers say about the limits, or None when they say nothing (the common fast path)."""
    if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
        return RateLimitInfo(
            limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
            remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
            reset_requests_s=duration_s(headers.get("x-ratelimit-reset-requests")),
            limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
            reset_tokens_s=duration_s(headers.get("x-ratelimit-reset-tokens")),
        )
    if "anthropic-ratelimit-requests-limit" in headers or "anthropic-ratelimit-tokens-limit" in headers:
        wall = time.time() if now is None else now
        return RateLimitInfo(
            limit_requests=_int(headers.get("anthropic-ratelimit-requests-limit")),
            remaining_requests=_int(headers.get("anthropic-ratelimit-requests-remaining")),
            reset_requests_s=_until(headers.get("anthropic-ratelimit-requests-reset"), wall),
            limit_tokens=_int(headers.get("anthropic-ratelimit-tokens-limit")),
            remaining_tokens=_int(headers.get("anthropic-ratelimit-tokens-remaining")),
            reset_tokens_s=_until(headers.get("anthropic-ratelimit-tokens-reset"), wall),
        )
    return None


def duration_s(text: str | None) -> float | None:
    """``"6m0s"``, ``"1.5s"``, ``"20ms"`` → seconds; a bare number is seconds."""
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts:
        try:
            return float(text)
        except ValueError:
            return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _until(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now)


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None
