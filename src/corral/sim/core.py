"""The simulated model itself, free of HTTP: one parsed request in, one reply (and a delay) out.

It also keeps the counters, the request log and the rate limits, because every request passes
through it. All of it runs on the server's event loop thread; other threads only read snapshots.

Faults are decided here and carried out by the server: a fault that changes the reply (malformed,
invalid, server_error, bad_body) is in the body; one that changes how it is sent (reset, hang,
trickle) is named in ``Outgoing.fault`` for the server to act on.

Bodies take the shape of the request's wire (``SimRequest.wire``): OpenAI chat completions, or
Anthropic messages (:mod:`corral.sim.anthropic`); answers, faults and limits are the same for both.
An OpenAI request that asks for ``logprobs`` gets them for the answer it is sent, whatever made it
(:mod:`corral.sim.logprobs`); a request that does not costs nothing more.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

import orjson

from corral.sim.answers import Filler, filler_for
from corral.sim.anthropic import OVERLOADED, messages_error_body, render_message
from corral.sim.config import LogEntry, ScriptCall, SimConfig, SimReply, SimStats
from corral.sim.faults import malformed
from corral.sim.fewshot import fewshot_answer, read_fewshot
from corral.sim.hashing import mix, step
from corral.sim.limits import RateLimits
from corral.sim.logprobs import content_logprobs
from corral.sim.openai import SimRequest, chat_completion, error_body, estimate_tokens
from corral.sim.slips import Slips
from corral.sim.window import window_refusal

__all__ = ["Outgoing", "Script", "SimCore"]

Script = Callable[[ScriptCall], SimReply | None]
_LOG_TEXT = 200
_SERVER_ERRORS = (500, 502, 503)
#: what a client gets when a proxy in front of the API answers for it
_BAD_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTML = "text/html; charset=utf-8"
#: faults of the connection, which a batch line (a stored body) cannot have
_TRANSPORT_FAULTS = frozenset({"reset", "hang", "trickle", "bad_body"})
_UNSCRIPTED = SimReply()  # what "no script, or the script returned None" means; never mutated


class Outgoing(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str] | None
    #: seconds to wait before sending (0: send at once)
    delay: float
    #: what goes wrong on purpose (``LogEntry.fault``); the server acts on "reset", "hang", "trickle"
    fault: str = ""
    #: tokens charged against the limits (``LogEntry.tokens``)
    tokens: int = 0


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
        #: hallucinated and misplaced values, field errors: drawn from the seed and the text, not
        #: from a stream
        self._config = config
        self._slips_by_model: dict[str, Slips] = {}
        # One draw per request picks at most one fault: consecutive slices of [0, 1), one per kind.
        # bad_arguments is malformed under its own name (malformed already breaks the tool call's
        # arguments), logged apart so a test can tell which knob produced it.
        shares = (
            ("malformed", config.malformed_rate),
            ("invalid", config.invalid_rate),
            ("bad_arguments", config.bad_arguments_rate),
            ("server_error", config.server_error_rate),
            ("reset", config.reset_rate),
            ("hang", config.hang_rate),
            ("trickle", config.trickle_rate),
            ("bad_body", config.bad_body_rate),
        )
        self._slices = [(kind, share) for kind, share in shares if share > 0]
        self._fault_total = sum(share for _, share in self._slices)
        self._limits = None
        if config.rpm is not None or config.tpm is not None:
            self._limits = RateLimits(
                config.rpm,
                config.tpm,
                headers=config.rate_limit_headers,
                now=time.monotonic(),
                bucket=config.rate_limit_bucket,
            )
        #: requests received in total; never reset, so ids and ScriptCall.index stay unique
        self.index = 0
        self.requests = 0
        self.in_flight = 0
        self.peak = 0
        self.by_status: dict[int, int] = {}
        self.by_fault: dict[str, int] = {}
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

    def finish(
        self,
        arrived: float,
        index: int,
        *,
        model: str,
        mode: str,
        status: int,
        text: str,
        fault: str = "",
        tokens: int = 0,
    ) -> None:
        self.in_flight -= 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if fault:
            self.by_fault[fault] = self.by_fault.get(fault, 0) + 1
        # hash() is free here: the text's hash is cached on the string since the answer-cache lookup.
        self.log.append(
            LogEntry(arrived, index, model, mode, status, text[:_LOG_TEXT], hash(text), fault, tokens)
        )

    def stats(self) -> SimStats:
        return SimStats(self.requests, self.peak, self.in_flight, dict(self.by_status), dict(self.by_fault))

    def reset(self) -> None:
        """Counters and log only: the rate-limit buckets keep their state, as a provider's would."""
        self.requests = 0
        self.peak = self.in_flight
        self.by_status = {}
        self.by_fault = {}
        self.log.clear()
        self._repeats.clear()
        self.script_errors.clear()

    # --- answering -------------------------------------------------------------------------------

    def reply(
        self, request: SimRequest, index: int, now: float | None = None, *, batch: bool = False
    ) -> Outgoing:
        """The reply to ``request``, which arrived at ``now`` (``time.monotonic()``; None: now).

        ``batch``: a line of a provider batch. It is answered without latency, outside the online
        rate limits (batches have their own), and never with a transport fault (reset, hang, trickle,
        bad body): a batch result is a stored body, not a connection.

        A request that does not fit the context window is refused first, as a bad request: at once,
        uncharged, unseen by the script, and without a draw (the faults of the requests that are
        answered keep their pattern)."""
        refused = self._over_window(request)
        if refused is not None:
            return refused
        draw = self._faults.random()  # one draw per request: the fault pattern depends on order only
        delay = 0.0 if batch else self._draw_latency()
        slips = self._request_slips(request, index)
        filler, answer, schema_answer = _answer(request, slips)
        # OpenAI charges on arrival: the prompt and the most the answer may take (or will take).
        tokens = request.prompt_tokens + (request.max_tokens or estimate_tokens(len(answer)))
        admitted = None if batch else self._admit(request, tokens, now)
        if isinstance(admitted, Outgoing):  # decided before any fault: a refused request never also faults
            return admitted
        headers = admitted

        scripted = self._run_script(request, index, answer) if self.script is not None else None
        if isinstance(scripted, Outgoing):
            return scripted._replace(headers=headers, tokens=tokens)
        reply = scripted or _UNSCRIPTED
        if reply.headers:
            headers = _merge(headers, reply.headers)
        if reply.latency_ms is not None:
            delay = reply.latency_ms / 1000
        status = 200
        fault: str = "" if batch and reply.fault in _TRANSPORT_FAULTS else (reply.fault or "")
        body: bytes | None = None
        # Random faults only where the script left the reply to the simulator.
        if reply.status is not None and reply.status >= 400:
            status, body = reply.status, _error_payload(reply, request.wire)
        elif reply.answer_text is not None:
            answer = reply.answer_text
        elif not fault and draw < self._fault_total:
            fault, answer, status = self._random_fault(draw, request, filler, answer, slips, batch=batch)
            if status >= 400:
                status, body = _server_error(request.wire, status)
                if status in (503, OVERLOADED) and self.config.rate_limit_headers:
                    headers = _merge(headers, {"retry-after": "1"})
        if fault == "bad_body":
            return Outgoing(status, _BAD_BODY, _as_html(headers), delay, fault, tokens)
        if body is None:
            body = self._render(
                request, answer, index, reply.finish_reason, slips, filler=filler if schema_answer else None
            )
        return Outgoing(status, body, headers, delay, fault, tokens)

    def _over_window(self, request: SimRequest) -> Outgoing | None:
        """The 400 for a request that does not fit the context window; None when it fits."""
        window = self.config.context_window
        refused = window_refusal(request, window) if window is not None else None
        return None if refused is None else Outgoing(400, refused, None, 0.0, "context_length", 0)

    def _admit(
        self, request: SimRequest, tokens: int, now: float | None
    ) -> Outgoing | Mapping[str, str] | None:
        """Charge an online request to the rate limits: the 429 refusing it, or the headers to send
        (None: no limits, or no headers)."""
        if self._limits is None:
            return None
        at = time.monotonic() if now is None else now
        refusal = self._limits.charge(tokens, at, request.model, request.wire)
        if refusal is not None:
            return Outgoing(429, refusal.body, refusal.headers, 0.0, "rate_limit", 0)
        return self._limits.headers(request.wire)

    def _render(
        self,
        request: SimRequest,
        answer: str,
        index: int,
        finish_reason: str | None,
        slips: Slips,
        *,
        filler: Filler | None = None,
    ) -> bytes:
        """The reply body; ``filler``: the schema's, when it gave the answer (its marks make the
        logprobs, for a request that asks for them)."""
        if request.wire == "anthropic":
            return render_message(
                request,
                answer,
                message_id=f"msg_sim{self._tag}{index:017x}",
                tool_id=f"toolu_sim{self._tag}{index:014x}",
                finish_reason=finish_reason,
            )[0]
        token_logprobs = None
        if request.logprobs and request.mode != "tools":
            marks = filler.marks(request.user_text, slips) if filler is not None else None
            token_logprobs = content_logprobs(
                answer,
                marks,
                seed=self.config.seed,
                top=request.top_logprobs,
                strict=request.mode == "json_schema",
            )
        return chat_completion(
            request,
            answer,
            completion_id=f"chatcmpl-sim{self._tag}{index:017x}",
            call_id=f"call_sim{self._tag}{index:014x}",
            finish_reason=finish_reason,
            token_logprobs=token_logprobs,
        )[0]

    def _random_fault(
        self,
        draw: float,
        request: SimRequest,
        filler: Filler | None,
        answer: str,
        slips: Slips,
        *,
        batch: bool,
    ) -> tuple[str, str, int]:
        """(fault, answer, status) for the fault whose slice holds ``draw``; "" when it cannot apply."""
        fault, pick, low = "", 0.0, 0.0
        for kind, share in self._slices:
            if draw < low + share:
                fault, pick = kind, (draw - low) / share  # where in its slice: which variant
                break
            low += share
        if batch and fault in _TRANSPORT_FAULTS:
            return "", answer, 200
        if fault == "server_error":
            return fault, answer, _SERVER_ERRORS[min(int(pick * 3), 2)]
        if fault in ("malformed", "bad_arguments"):
            return (fault, malformed(answer, pick), 200) if request.mode != "text" else ("", answer, 200)
        if fault == "invalid":  # only where there is a schema to break
            invalid = filler.invalid(request.user_text, pick, slips) if filler else None
            return (fault, invalid, 200) if invalid is not None else ("", answer, 200)
        return fault, answer, 200

    def _draw_latency(self) -> float:
        if self._median <= 0:
            return 0.0
        if self.config.latency_dist == "fixed" or self.config.latency_sigma == 0:
            return self._median
        return self._latency.lognormvariate(self._mu, self.config.latency_sigma)

    def _request_slips(self, request: SimRequest, index: int) -> Slips:
        """What this request gets wrong: its model's slips, drawn anew for a request that samples
        (temperature above 0: a model sampling at 1 answers a text differently each time, greedy
        decoding the same way), so that several samples of one text agree only as often as the
        model is right."""
        slips = self._slips(request.model)
        if request.temperature > 0 and (slips.active or slips.fields):
            slips = slips._replace(seed=mix(step(slips.seed, index + 1)))
        return slips

    def _slips(self, model: str) -> Slips:
        """What ``model`` gets wrong: the same seed and shares for every model, but field errors may
        be set per model (``SimConfig.field_errors``)."""
        slips = self._slips_by_model.get(model)
        if slips is None:
            if len(self._slips_by_model) > 64:  # model names come from requests
                self._slips_by_model.clear()
            config = self._config
            shares = _model_shares(config.field_errors, model)
            slips = self._slips_by_model[model] = Slips(
                config.seed, config.hallucinate, config.misplace, shares
            )
        return slips

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
            return Outgoing(500, _error_body(request.wire, 500, message), None, 0.0)


def _model_shares(shares: Mapping[str, float], model: str) -> tuple[tuple[str, float], ...]:
    """The field-error shares that apply to ``model``: the plain ones (``age``), and over them its own
    (``gpt-4o-mini:age``: models differ in how often they get a field wrong)."""
    merged = {name: share for name, share in shares.items() if ":" not in name}
    for name, share in shares.items():
        owner, colon, field = name.rpartition(":")
        if colon and owner == model:
            merged[field] = share
    return tuple(sorted(merged.items()))


def _answer(request: SimRequest, slips: Slips) -> tuple[Filler | None, str, bool]:
    """The schema's filler, if there is a schema, the right answer (a few-shot prompt's, langextract's,
    by its examples, any other's by its schema) and whether the filler gave it."""
    filler = None
    if request.schema_key is not None and request.schema is not None:
        filler = filler_for(request.schema_key, request.schema)
    shot = read_fewshot(request.user_text, request.schema)
    if shot is not None:
        return filler, fewshot_answer(shot, slips), False
    if filler is not None:
        if request.logprobs and request.mode != "tools":
            filler.marks(request.user_text, slips)  # the fill that marks gives the answer too
        return filler, filler.answer(request.user_text, slips), True
    if request.mode == "text":
        return None, f"(simulated reply from {request.model}) {request.user_text[:200]}", False
    return None, orjson.dumps({"answer": request.user_text[:200]}).decode(), False


def _as_html(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    if any(name.lower() == "content-type" for name in headers or ()):
        return headers or {}  # a scripted content type wins
    return _merge(headers, {"Content-Type": _HTML})


def _merge(base: Mapping[str, str] | None, extra: Mapping[str, str]) -> Mapping[str, str]:
    """``extra`` over ``base``; header names match whatever their case, so none is sent twice."""
    if not base:
        return extra
    names = {name.lower() for name in extra}
    return {**{k: v for k, v in base.items() if k.lower() not in names}, **extra}


def _server_error(wire: str, status: int) -> tuple[int, bytes]:
    """A random server error's status and body; Anthropic says "overloaded" with its own status."""
    if wire == "anthropic":
        status = OVERLOADED if status == 503 else status
        return status, messages_error_body(status)
    return status, error_body(status)


def _error_body(wire: str, status: int, message: str | None = None) -> bytes:
    if wire == "anthropic":
        return messages_error_body(status, message)
    return error_body(status, message)


def _error_payload(reply: SimReply, wire: str) -> bytes:
    assert reply.status is not None
    body = reply.error_body
    if body is None:
        return _error_body(wire, reply.status)
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(body)
