"""OpenAI's rate limits, enforced: requests and tokens per minute as continuous token buckets.

OpenAI documents that its limits "can be quantized", enforced over shorter periods than a minute
(60,000 requests/minute as 1,000 requests/second), so a short burst draws 429s well below the
per-minute rate. By default (``bucket="second"``) each limit is therefore enforced by a bucket of one
second's worth (limit/60, at least one request) that refills at limit/60 per second and starts with
one second's worth: a fresh client cannot burst a minute's worth. A cost larger than that bucket (a
big prompt against a second's worth of tokens) is accepted once the bucket is full and leaves it in
debt; only a cost larger than the whole per-minute limit is refused as too large. ``bucket="minute"``
is the lenient reading: a bucket of the whole per-minute limit, starting full.

A request is charged on arrival (1 request; its prompt tokens plus ``max_tokens``, or the answer's
tokens when it set none) and only when both limits can pay; a refused request costs nothing. Refill
is lazy, computed from the clock on each request: no background task, a few microseconds per
request.

The ``x-ratelimit-*`` headers always speak of the minute: the limit is the per-minute one, and in
"second" mode remaining and reset come from a per-minute bucket charged alongside the enforcing one
(remaining near the limit, resets of milliseconds, as OpenAI's headers look in practice). They do not
reveal that the second's allowance is spent; only a 429's ``retry-after`` says when it can pay again.

The same limits serve the Anthropic wire; only the shapes differ there: ``anthropic-ratelimit-*``
headers with RFC 3339 resets, and Anthropic's error body on a 429.

:func:`overdraft` replays a request log through the same kind of buckets, so a test can check that
what a client sent never exceeded a limit (against a simulator that does not enforce one, or as a
check of the simulator itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from corral.sim.config import LogEntry, RateLimitBucket

__all__ = ["Overdraft", "RateLimits", "Refusal", "format_duration", "overdraft"]

_ORG = "org-corral-sim"
#: seconds of refill that are float rounding, not a wait: a client that waited exactly the
#: retry-after it was given (rounded to the millisecond, less the noise ``format_duration`` drops)
#: must get through
_SLACK = 1e-6
#: seconds of refill an overdraft must exceed to count: more than ``_SLACK``, so that a replay of what
#: the simulator let through (refilled at other moments, so rounded otherwise) never reads as one
_REPLAY_SLACK = 10 * _SLACK


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1s``, ``1m30.5s``, ``6m0s``.

    It is Go's ``time.Duration`` format at millisecond precision, rounded up: waiting the time
    written is always long enough.
    """
    ms = _milliseconds(seconds)
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


def _milliseconds(seconds: float) -> int:
    """``seconds`` in whole milliseconds, rounded up; 1e-6: float noise must not add a whole one."""
    return math.ceil(seconds * 1000 - 1e-6)


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, capacity: float, per_minute: int, now: float) -> None:
        self.capacity = capacity
        self.rate = per_minute / 60
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:  # a clock read before the last charge must not drain the bucket
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def full_in(self) -> float:
        return (self.capacity - self.level) / self.rate


def _enforcing_bucket(per_minute: int, bucket: RateLimitBucket, now: float, *, least: float) -> _Bucket:
    """The bucket that decides whether a charge goes: a second's worth (at least ``least``) or a minute's."""
    if bucket == "minute":
        return _Bucket(float(per_minute), per_minute, now)
    return _Bucket(max(least, per_minute / 60), per_minute, now)


class _Limit:
    """One limit (requests or tokens): the bucket that enforces it and the one its headers report.

    In "minute" mode they are one bucket; in "second" mode the reported one holds a minute's worth.
    """

    __slots__ = ("enforcing", "per_minute", "reported")

    def __init__(self, per_minute: int, bucket: RateLimitBucket, now: float, *, least: float) -> None:
        self.per_minute = per_minute
        self.enforcing = _enforcing_bucket(per_minute, bucket, now, least=least)
        self.reported = self.enforcing if bucket == "minute" else _Bucket(float(per_minute), per_minute, now)

    def refill(self, now: float) -> None:
        self.enforcing.refill(now)
        if self.reported is not self.enforcing:
            self.reported.refill(now)

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` can be paid (0: now; inf: never, it is larger than the whole limit)."""
        if cost > self.per_minute:
            return math.inf
        bucket = self.enforcing
        # A cost beyond the bucket's capacity goes once the bucket is full, and leaves it in debt:
        # refusing it for ever would make a big prompt impossible under a per-minute limit it fits.
        seconds = (min(cost, bucket.capacity) - bucket.level) / bucket.rate
        return seconds if seconds > _SLACK else 0.0

    def charge(self, cost: float) -> None:
        self.enforcing.level -= cost
        if self.reported is not self.enforcing:
            self.reported.level -= cost


class Refusal(NamedTuple):
    """A 429: the OpenAI error body and its headers (None when headers are switched off)."""

    body: bytes
    headers: dict[str, str] | None


class RateLimits:
    """The requests and tokens limits of one simulated organisation (either may be absent)."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        *,
        headers: bool,
        now: float,
        bucket: RateLimitBucket = "second",
    ) -> None:
        self._requests = _Limit(rpm, bucket, now, least=1) if rpm is not None else None
        self._tokens = _Limit(tpm, bucket, now, least=0) if tpm is not None else None
        self._send_headers = headers

    def charge(self, tokens: int, now: float, model: str, wire: str = "openai") -> Refusal | None:
        """Charge one request of ``tokens`` at ``now``, or refuse it (None: charged) in ``wire``'s shape."""
        requests, limit = self._requests, self._tokens
        wait_requests = wait_tokens = 0.0
        if requests is not None:
            requests.refill(now)
            wait_requests = requests.wait(1)
        if limit is not None:
            limit.refill(now)
            wait_tokens = limit.wait(tokens)
        if wait_requests == 0 and wait_tokens == 0:
            if requests is not None:
                requests.charge(1)
            if limit is not None:
                limit.charge(tokens)
            return None
        # Both may be short: the one that keeps the request waiting longer is the one to name.
        if wait_tokens > wait_requests:
            assert limit is not None
            return self._refuse(limit, "tokens", cost=tokens, wait=wait_tokens, model=model, wire=wire)
        assert requests is not None
        return self._refuse(requests, "requests", cost=1, wait=wait_requests, model=model, wire=wire)

    def headers(self, wire: str = "openai") -> dict[str, str] | None:
        """The ``x-ratelimit-*`` (or ``anthropic-ratelimit-*``) headers as they stand (None: off).

        They report the per-minute bucket, whichever bucket enforces the limit (see the module)."""
        if not self._send_headers:
            return None
        if wire == "anthropic":
            return self._anthropic_headers()
        headers: dict[str, str] = {}
        for name, limit in (("requests", self._requests), ("tokens", self._tokens)):
            if limit is not None:
                bucket = limit.reported
                headers[f"x-ratelimit-limit-{name}"] = str(limit.per_minute)
                headers[f"x-ratelimit-remaining-{name}"] = str(int(bucket.level))
                headers[f"x-ratelimit-reset-{name}"] = format_duration(bucket.full_in())
        return headers

    def _anthropic_headers(self) -> dict[str, str]:
        # Anthropic says when a bucket is whole again as a moment (RFC 3339), not as a duration.
        wall = time.time()
        headers: dict[str, str] = {}
        for name, limit in (("requests", self._requests), ("tokens", self._tokens)):
            if limit is not None:
                bucket = limit.reported
                full = datetime.fromtimestamp(math.ceil(wall + bucket.full_in()), tz=UTC)
                headers[f"anthropic-ratelimit-{name}-limit"] = str(limit.per_minute)
                headers[f"anthropic-ratelimit-{name}-remaining"] = str(int(bucket.level))
                headers[f"anthropic-ratelimit-{name}-reset"] = full.strftime("%Y-%m-%dT%H:%M:%SZ")
        return headers

    def _refuse(self, limit: _Limit, kind: str, *, cost: int, wait: float, model: str, wire: str) -> Refusal:
        unit = "RPM" if kind == "requests" else "TPM"
        headers = self.headers(wire)
        if math.isinf(wait):
            # OpenAI's answer to a request larger than the whole per-minute limit: waiting cannot
            # help, so no retry-after.
            message = (
                f"Request too large for {model} in organization {_ORG} on {kind} per min ({unit}): "
                f"Limit {limit.per_minute}, Requested {cost}. The input or output tokens must be "
                "reduced in order to run successfully."
            )
        else:
            # Used is the minute's, as the headers say: neither tells that a second's worth is spent.
            used = math.ceil(limit.reported.capacity - limit.reported.level)
            message = (
                f"Rate limit reached for {model} in organization {_ORG} on {kind} per min ({unit}): "
                f"Limit {limit.per_minute}, Used {used}, Requested {cost}."
            )
            if headers is not None:
                # Without headers the client must adapt blindly: the message gives no hint either.
                # The wait is the enforcing bucket's, so a client that obeys it is let through.
                message += f" Please try again in {format_duration(wait)}."
                wait_ms = _milliseconds(wait)
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


def overdraft(
    log: Iterable[LogEntry],
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    bucket: RateLimitBucket = "second",
) -> Overdraft:
    """Replay the charged requests of ``log`` (``tokens > 0``) through buckets of ``rpm``/``tpm``.

    The buckets are those that enforce the limits in ``bucket`` mode, started at the first entry:
    "second" holds one second's worth (at least one request) and starts with one second's worth;
    "minute" holds the whole per-minute limit and starts full, as lenient as a fresh provider key.

    Returns the largest shortfall at any charge: ``Overdraft(0, 0)`` means the accepted requests
    never exceeded what the limits allow at any moment, bursts included. In "minute" mode it is the
    deepest either bucket went below zero. In "second" mode it is what the bucket lacked of the
    cost, or of its whole capacity for a cost beyond it (``min(cost, capacity) - level``), so a big
    request taken on a full bucket is no overdraft, but one charged while its debt lasts is; a cost
    beyond the whole per-minute limit is over by its excess even on a full bucket.
    """
    charged = sorted((e for e in log if e.tokens > 0), key=lambda e: (e.time, e.seq))
    worst = [0.0, 0.0]
    if not charged:
        return Overdraft(0.0, 0.0)
    start = charged[0].time
    buckets = [
        _enforcing_bucket(rpm, bucket, start, least=1) if rpm else None,
        _enforcing_bucket(tpm, bucket, start, least=0) if tpm else None,
    ]
    for entry in charged:
        for i, (replay, cost, limit) in enumerate(zip(buckets, (1, entry.tokens), (rpm, tpm), strict=True)):
            if replay is None or limit is None:
                continue
            replay.refill(entry.time)
            if bucket == "minute":
                replay.level -= cost
                if -replay.level > replay.rate * _REPLAY_SLACK:
                    worst[i] = max(worst[i], -replay.level)
                continue
            # A cost beyond the whole per-minute limit is never allowed, full bucket or not.
            short = max(min(cost, replay.capacity) - replay.level, cost - limit)
            replay.level -= cost
            if short > replay.rate * _REPLAY_SLACK:
                worst[i] = max(worst[i], short)
    return Overdraft(worst[0], worst[1])
