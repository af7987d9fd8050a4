"""OpenAI's rate limits, enforced: requests and tokens per minute as continuous token buckets.

Each bucket holds up to its per-minute limit, refills at limit/60 per second and starts full, as
OpenAI's do. A request is charged on arrival (1 request; its prompt tokens plus ``max_tokens``, or
the answer's tokens when it set none) and only when both buckets can pay; a refused request costs
nothing. Refill is lazy, computed from the clock on each request: no background task, a few
microseconds per request.

The same buckets serve the Anthropic wire; only the shapes differ there: ``anthropic-ratelimit-*``
headers with RFC 3339 resets, and Anthropic's error body on a 429.

:func:`overdraft` replays a request log through the same buckets, so a test can check that what a
client sent never exceeded a limit (against a simulator that does not enforce one, or as a check of
the simulator itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from corral.sim.config import LogEntry

__all__ = ["Overdraft", "RateLimits", "Refusal", "format_duration", "overdraft"]

_ORG = "org-corral-sim"


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1s``, ``1m30.5s``, ``6m0s``.

    It is Go's ``time.Duration`` format at millisecond precision, rounded up: waiting the time
    written is always long enough.
    """
    ms = math.ceil(seconds * 1000 - 1e-6)  # 1e-6: float noise must not add a whole millisecond
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:  # a clock read before the last charge must not drain the bucket
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, cost: float) -> float:
        """Seconds until the bucket can pay ``cost`` (0: now; inf: never, it is larger than the bucket)."""
        if cost > self.capacity:
            return math.inf
        return max(0.0, (cost - self.level) / self.rate)

    def full_in(self) -> float:
        return (self.capacity - self.level) / self.rate


class Refusal(NamedTuple):
    """A 429: the OpenAI error body and its headers (None when headers are switched off)."""

    body: bytes
    headers: dict[str, str] | None


class RateLimits:
    """The requests and tokens buckets of one simulated organisation (either may be absent)."""

    def __init__(self, rpm: int | None, tpm: int | None, *, headers: bool, now: float) -> None:
        self._requests = _Bucket(rpm, now) if rpm is not None else None
        self._tokens = _Bucket(tpm, now) if tpm is not None else None
        self._send_headers = headers

    def charge(self, tokens: int, now: float, model: str, wire: str = "openai") -> Refusal | None:
        """Charge one request of ``tokens`` at ``now``, or refuse it (None: charged) in ``wire``'s shape."""
        requests, bucket = self._requests, self._tokens
        wait_requests = wait_tokens = 0.0
        if requests is not None:
            requests.refill(now)
            wait_requests = requests.wait(1)
        if bucket is not None:
            bucket.refill(now)
            wait_tokens = bucket.wait(tokens)
        if wait_requests == 0 and wait_tokens == 0:
            if requests is not None:
                requests.level -= 1
            if bucket is not None:
                bucket.level -= tokens
            return None
        # Both may be short: the one that keeps the request waiting longer is the one to name.
        if wait_tokens > wait_requests:
            assert bucket is not None
            return self._refuse(bucket, "tokens", cost=tokens, wait=wait_tokens, model=model, wire=wire)
        assert requests is not None
        return self._refuse(requests, "requests", cost=1, wait=wait_requests, model=model, wire=wire)

    def headers(self, wire: str = "openai") -> dict[str, str] | None:
        """The ``x-ratelimit-*`` (or ``anthropic-ratelimit-*``) headers as they stand (None: off)."""
        if not self._send_headers:
            return None
        if wire == "anthropic":
            return self._anthropic_headers()
        headers: dict[str, str] = {}
        for name, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{name}"] = str(int(bucket.capacity))
                headers[f"x-ratelimit-remaining-{name}"] = str(int(bucket.level))
                headers[f"x-ratelimit-reset-{name}"] = format_duration(bucket.full_in())
        return headers

    def _anthropic_headers(self) -> dict[str, str]:
        # Anthropic says when a bucket is whole again as a moment (RFC 3339), not as a duration.
        wall = time.time()
        headers: dict[str, str] = {}
        for name, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is not None:
                full = datetime.fromtimestamp(math.ceil(wall + bucket.full_in()), tz=UTC)
                headers[f"anthropic-ratelimit-{name}-limit"] = str(int(bucket.capacity))
                headers[f"anthropic-ratelimit-{name}-remaining"] = str(int(bucket.level))
                headers[f"anthropic-ratelimit-{name}-reset"] = full.strftime("%Y-%m-%dT%H:%M:%SZ")
        return headers

    def _refuse(
        self, bucket: _Bucket, kind: str, *, cost: int, wait: float, model: str, wire: str
    ) -> Refusal:
        limit = int(bucket.capacity)
        unit = "RPM" if kind == "requests" else "TPM"
        headers = self.headers(wire)
        if math.isinf(wait):
            # OpenAI's answer to a request larger than the whole bucket: waiting cannot help, so no
            # retry-after.
            message = (
                f"Request too large for {model} in organization {_ORG} on {kind} per min ({unit}): "
                f"Limit {limit}, Requested {cost}. The input or output tokens must be reduced in order "
                "to run successfully."
            )
        else:
            used = math.ceil(bucket.capacity - bucket.level)
            message = (
                f"Rate limit reached for {model} in organization {_ORG} on {kind} per min ({unit}): "
                f"Limit {limit}, Used {used}, Requested {cost}."
            )
            if headers is not None:
                # Without headers the client must adapt blindly: the message gives no hint either.
                message += f" Please try again in {format_duration(wait)}."
                wait_ms = math.ceil(wait * 1000)
                headers["retry-after"] = str(math.ceil(wait_ms / 1000))
                if wire == "openai":  # Anthropic's retry-after is whole seconds only
                    headers["retry-after-ms"] = str(wait_ms)
        if wire == "anthropic":
            anthropic = {"type": "rate_limit_error", "message": message}
            return Refusal(orjson.dumps({"type": "error", "error": anthropic}), headers)
        error = {"message": message, "type": kind, "param": None, "code": "rate_limit_exceeded"}
        return Refusal(orjson.dumps({"error": error}), headers)


class Overdraft(NamedTuple):
    """How far a log's accepted requests went beyond the buckets at worst (0: never beyond)."""

    requests: float
    tokens: float


def overdraft(log: Iterable[LogEntry], *, rpm: int | None = None, tpm: int | None = None) -> Overdraft:
    """Replay the charged requests of ``log`` (``tokens > 0``) through full buckets of ``rpm``/``tpm``.

    Returns the deepest either bucket went below zero: ``Overdraft(0, 0)`` means the accepted
    requests never exceeded what the limits allow at any moment, bursts included. The buckets start
    full at the first entry, so the check is as lenient as a fresh provider key.
    """
    charged = sorted((e for e in log if e.tokens > 0), key=lambda e: (e.time, e.seq))
    worst = [0.0, 0.0]
    if not charged:
        return Overdraft(0.0, 0.0)
    start = charged[0].time
    buckets = [_Bucket(rpm, start) if rpm else None, _Bucket(tpm, start) if tpm else None]
    for entry in charged:
        for i, (bucket, cost) in enumerate(zip(buckets, (1, entry.tokens), strict=True)):
            if bucket is not None:
                bucket.refill(entry.time)
                bucket.level -= cost
                worst[i] = max(worst[i], -bucket.level)
    return Overdraft(worst[0], worst[1])
