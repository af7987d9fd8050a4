"""The simulated model itself, free of HTTP: one parsed request in, one reply (and a delay) out.

It also keeps the counters and the request log, because every request passes through it. All of it
runs on the server's event loop thread; other threads only read snapshots.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

import orjson

from corral.sim.answers import filler_for
from corral.sim.config import LogEntry, ScriptCall, SimConfig, SimReply, SimStats
from corral.sim.faults import malformed
from corral.sim.protocol import SimRequest, chat_completion, error_body

__all__ = ["Outgoing", "Script", "SimCore"]

Script = Callable[[ScriptCall], SimReply | None]
_LOG_TEXT = 200


class Outgoing(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str] | None
    #: seconds to wait before sending (0: send at once)
    delay: float


class SimCore:
    def __init__(self, config: SimConfig, script: Script | None) -> None:
        self.config = config
        self.script = script
        # Separate streams, so that turning latency on does not change which answers are faulty.
        self._faults = random.Random(config.seed)
        self._latency = random.Random(f"latency:{config.seed}")
        self._median = config.latency_ms / 1000
        self._mu = math.log(self._median) if self._median > 0 else 0.0
        self._tag = secrets.token_hex(3)  # ids differ between simulator runs, like real ones
        #: requests received in total; never reset, so ids and ScriptCall.index stay unique
        self.index = 0
        self.requests = 0
        self.in_flight = 0
        self.peak = 0
        self.by_status: dict[int, int] = {}
        self.log: deque[LogEntry] = deque(maxlen=config.log_size)
        self.script_errors: list[Exception] = []
        self._repeats: dict[tuple[str, str, bytes | None], int] = {}

    # --- bookkeeping -----------------------------------------------------------------------------

    def begin(self) -> int:
        index = self.index
        self.index += 1
        self.requests += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return index

    def finish(self, arrived: float, index: int, *, model: str, mode: str, status: int, text: str) -> None:
        self.in_flight -= 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        # hash() is free here: the text's hash is cached on the string since the answer-cache lookup.
        self.log.append(LogEntry(arrived, index, model, mode, status, text[:_LOG_TEXT], hash(text)))

    def stats(self) -> SimStats:
        return SimStats(self.requests, self.peak, self.in_flight, dict(self.by_status))

    def reset(self) -> None:
        self.requests = 0
        self.peak = self.in_flight
        self.by_status = {}
        self.log.clear()
        self._repeats.clear()
        self.script_errors.clear()

    # --- answering -------------------------------------------------------------------------------

    def reply(self, request: SimRequest, index: int) -> Outgoing:
        draw = self._faults.random()  # one draw per request: the fault pattern depends on order only
        delay = self._draw_latency()
        filler = None
        if request.schema_key is not None and request.schema is not None:
            filler = filler_for(request.schema_key, request.schema)
        if filler is not None:
            answer = filler.answer(request.user_text)
        elif request.mode == "text":
            answer = f"(simulated reply from {request.model}) {request.user_text[:200]}"
        else:
            answer = orjson.dumps({"answer": request.user_text[:200]}).decode()

        scripted = self._run_script(request, index, answer) if self.script is not None else None
        if isinstance(scripted, Outgoing):
            return scripted
        headers = None
        finish_reason = None
        faults = request.mode != "text"
        if scripted is not None:
            headers = scripted.headers
            finish_reason = scripted.finish_reason
            if scripted.latency_ms is not None:
                delay = scripted.latency_ms / 1000
            if scripted.status is not None and scripted.status >= 400:
                return Outgoing(scripted.status, _error_payload(scripted), headers, delay)
            if scripted.answer_text is not None:
                answer, faults = scripted.answer_text, False
        if faults:
            cfg = self.config
            if draw < cfg.malformed_rate:
                answer = malformed(answer, draw / cfg.malformed_rate)
            elif draw < cfg.malformed_rate + cfg.invalid_rate and filler is not None:
                answer = filler.invalid(request.user_text, (draw - cfg.malformed_rate) / cfg.invalid_rate)
        body, _ = chat_completion(
            request,
            answer,
            completion_id=f"chatcmpl-sim{self._tag}{index:017x}",
            call_id=f"call_sim{self._tag}{index:014x}",
            finish_reason=finish_reason,
        )
        return Outgoing(200, body, headers, delay)

    def _draw_latency(self) -> float:
        if self._median <= 0:
            return 0.0
        if self.config.latency_dist == "fixed" or self.config.latency_sigma == 0:
            return self._median
        return self._latency.lognormvariate(self._mu, self.config.latency_sigma)

    def _run_script(self, request: SimRequest, index: int, answer: str) -> SimReply | Outgoing | None:
        assert self.script is not None
        text = request.user_text
        # The same text asked for the same thing: a retry or a re-ask of one item, not another task.
        key = (text, request.mode, request.schema_key)
        repeat = self._repeats.get(key, 0)
        self._repeats[key] = repeat + 1
        call = ScriptCall(
            body=request.body,
            mode=request.mode,
            model=request.model,
            user_text=text,
            repeat=repeat,
            index=index,
            schema=request.schema,
            default_answer=answer,
        )
        try:
            return self.script(call)
        except Exception as exc:  # a bug in the test's script: answer 500 and keep it for the test
            self.script_errors.append(exc)
            message = f"corral.sim script raised {type(exc).__name__}: {exc}"
            return Outgoing(500, error_body(500, message), None, 0.0)


def _error_payload(reply: SimReply) -> bytes:
    assert reply.status is not None
    body = reply.error_body
    if body is None:
        return error_body(reply.status)
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(body)
