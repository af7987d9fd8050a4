"""The HTTP side: aiohttp's low-level server, and three ways to run it.

- :class:`Simulator`: ``async with`` in the current event loop (pytest-asyncio tests, benchmarks).
- :class:`SimulatorThread`: ``with`` in a background thread with its own loop (sync code, tests that
  run the CLI in a subprocess).
- :func:`serve`: until cancelled (the ``corral sim`` command); :func:`run` does it on uvloop.

The low-level ``aiohttp.web.Server`` with a dict of routes skips the Application machinery (router,
middlewares, signals); with access logging off, a request costs little more than parsing its body.

The transport faults are carried out here: a reset sends the status, the headers and half the body,
then closes; a hang holds the request until ``hang_s`` passes, the client leaves or the server stops,
then closes without a word; a trickle sends the body in pieces spread over ``trickle_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from corral.errors import ConfigError
from corral.sim.anthropic import OVERLOADED, messages_error_body, parse_messages
from corral.sim.batch_anthropic import AnthropicBatches
from corral.sim.batch_openai import OpenAIBatches
from corral.sim.batches import BatchStore, BatchView
from corral.sim.config import LogEntry, RateLimitBucket, SimConfig, SimStats
from corral.sim.core import Outgoing, Script, SimCore
from corral.sim.limits import Overdraft, overdraft
from corral.sim.openai import RequestError, SimRequest, error_body, parse_request
from corral.sim.window import model_entry

__all__ = ["Simulator", "SimulatorThread", "run", "serve"]

_JSON = "application/json"
_SHUTDOWN_GRACE = 1.0  # seconds closing waits for requests still being answered (slow latencies)
_MAX_BODY = 300 * 1024 * 1024  # above both providers' batch limits, so the limits are the sim's to check
_BACKLOG = 4096  # a thousand clients connecting at once must not overflow the accept queue
_TRICKLE_PIECES = 10
_Route = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _Observed:
    """What tests read from a running simulator, whichever way it runs."""

    _core: SimCore
    _batch_store: BatchStore
    config: SimConfig
    host: str
    port: int

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        """The Anthropic base URL, ``http://127.0.0.1:PORT`` (the SDK adds ``/v1/messages`` itself)."""
        return self.url.removesuffix("/v1")

    @property
    def stats(self) -> SimStats:
        store = self._batch_store
        return dataclasses.replace(
            self._core.stats(),
            batches=store.created,
            batch_lines=store.answered,
            batch_api_errors=store.api_errors,
        )

    @property
    def batches(self) -> list[BatchView]:
        """Every provider batch created (OpenAI and Anthropic), oldest first, with its lines' ids."""
        return self._batch_store.views()

    @property
    def log(self) -> list[LogEntry]:
        """The request log, oldest first (at most ``config.log_size`` entries)."""
        return list(self._core.log)

    @property
    def script_errors(self) -> list[Exception]:
        """Exceptions the script raised; each of those requests was answered with a 500."""
        return list(self._core.script_errors)

    def reset_stats(self) -> None:
        """Zero the counters and clear the log and the per-text repeat counts (not the rate limits)."""
        self._core.reset()
        self._batch_store.reset()

    def overdraft(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        bucket: RateLimitBucket | None = None,
    ) -> Overdraft:
        """How far the accepted requests in the log went beyond ``rpm``/``tpm`` at worst (0: never).

        The limits and the bucket mode (``SimConfig.rate_limit_bucket``) default to the configured
        ones; see :func:`corral.sim.limits.overdraft`. Against a simulator without limits, this checks
        a client's own limiter: ``assert sim.overdraft(rpm=600, tpm=90_000) == (0, 0)``.
        """
        rpm = self.config.rpm if rpm is None else rpm
        tpm = self.config.tpm if tpm is None else tpm
        if rpm is None and tpm is None:
            raise ConfigError("overdraft needs a limit: pass rpm= or tpm= (the simulator has none set)")
        bucket = self.config.rate_limit_bucket if bucket is None else bucket
        return overdraft(self._core.log, rpm=rpm, tpm=tpm, bucket=bucket)


class Simulator(_Observed):
    """The simulator server in the current event loop: ``async with Simulator(cfg) as sim: sim.url``."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        script: Script | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self._core = SimCore(self.config, script)
        self._batch_store = BatchStore(self._core, self.config)
        self._openai_batches = OpenAIBatches(self._batch_store)
        #: its own draws, so batch reads never shift the online requests' fault pattern
        self._batch_faults = random.Random(f"batch-api-{self.config.seed}")
        self._anthropic_batches = AnthropicBatches(self._batch_store, self.config.model)
        self._runner: web.ServerRunner | None = None
        #: set while closing: hanging requests end at once instead of holding up the shutdown
        self._stopping: asyncio.Event | None = None
        self._routes: dict[tuple[str, str], _Route] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/v1/messages"): self._messages,
            ("GET", "/v1/models"): self._models,
            ("GET", "/sim/stats"): self._stats,
            ("POST", "/sim/reset"): self._reset,
        }
        self._models_body = orjson.dumps({"object": "list", "data": [self._model_object(self.config.model)]})

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._stopping = asyncio.Event()  # made here: an Event belongs to the loop that first waits
        # access_log=None: no per-request logging at all, the ring buffer is the log.
        # handler_cancellation: a client that leaves (a timeout) ends its request here too, so
        # in_flight is true and hung requests do not pile up; it costs nothing per request.
        loop = asyncio.get_running_loop()

        def request_factory(
            message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
        ) -> web.BaseRequest:
            # aiohttp refuses bodies over 1 MB by default; a batch file may hold 200 MB (OpenAI) or a
            # Message Batches request 256 MB (Anthropic), as the real APIs accept.
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY)

        server = web.Server(
            self._handle, request_factory=request_factory, access_log=None, handler_cancellation=True
        )
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, backlog=_BACKLOG).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            if self._stopping is not None:
                self._stopping.set()
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- routes ----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get((request.method, request.path))
        if route is not None:
            return await route(request)
        path = request.path
        if request.method == "GET" and path.startswith("/v1/models/"):
            return _json(200, orjson.dumps(self._model_object(path.removeprefix("/v1/models/"))))
        # Batch paths carry ids: each batch module routes its own.
        if path.startswith(("/v1/files", "/v1/batches")):
            return self._batch_read_failure("openai", request) or await self._openai_batches.handle(request)
        if path == "/v1/messages/batches" or path.startswith("/v1/messages/batches/"):
            failed = self._batch_read_failure("anthropic", request)
            return failed or await self._anthropic_batches.handle(request)
        if any(p == path for _, p in self._routes):
            return _json(405, error_body(405, f"Method {request.method} not allowed for {path}"))
        return _json(404, error_body(404, f"Invalid URL ({request.method} {path})"))

    def _batch_read_failure(self, wire: str, request: web.BaseRequest) -> web.Response | None:
        """A read of a batch (its status, the list, results) that fails the way providers' do now and
        then: OpenAI's 500, Anthropic's 529. Creates and cancels are never failed here: whether a
        failed create made a batch is a question of its own."""
        rate = self.config.batch_api_error_rate
        if request.method != "GET" or not rate or self._batch_faults.random() >= rate:
            return None
        self._batch_store.api_errors += 1
        if wire == "anthropic":
            return _json(OVERLOADED, messages_error_body(OVERLOADED))
        sorry = "The server had an error while processing your request. Sorry about that!"
        return _json(500, error_body(500, sorry))

    async def _messages(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._chat(request, "anthropic")

    async def _chat(self, request: web.BaseRequest, wire: str = "openai") -> web.StreamResponse:
        core = self._core
        arrived = time.monotonic()
        index = core.begin()
        status, mode, model, text = 500, "", self.config.model, ""
        fault, tokens = "", 0
        try:
            raw = await request.read()
            arrived = time.monotonic()  # charged once it has all arrived, as the log says
            try:
                parsed = (
                    parse_request(raw, model) if wire == "openai" else _parse_messages(request, raw, model)
                )
            except RequestError as exc:
                status = exc.status
                if wire == "openai":
                    return _json(status, exc.body())
                return _json(status, messages_error_body(status, exc.message))
            mode, model, text = parsed.mode, parsed.model, parsed.user_text
            if wire == "openai" and mode in self.config.refused_modes:
                status, fault = 500, "mode_refused"
                return _json(500, refused_mode_body(mode))
            out = core.reply(parsed, index, arrived)
            fault, tokens = out.fault, out.tokens
            if out.delay > 0:
                await asyncio.sleep(out.delay)
            status = out.status
            if fault in ("reset", "hang", "trickle"):
                status, response = await self._misbehave(request, out)
                return response
            if out.headers is None:
                return web.Response(body=out.body, status=status, content_type=_JSON)
            return web.Response(body=out.body, status=status, headers=_headers(out))
        except asyncio.CancelledError:
            status = 499  # the server shut down (or the client left) before the answer was sent
            raise
        finally:
            core.finish(
                arrived, index, model=model, mode=mode, status=status, text=text, fault=fault, tokens=tokens
            )

    async def _misbehave(self, request: web.BaseRequest, out: Outgoing) -> tuple[int, web.StreamResponse]:
        """Send ``out`` the broken way its fault says; the status to log, and the response to return."""
        if out.fault == "hang":
            # Never answered, whatever ends the wait; a client that leaves cancels it (→ 499 too).
            assert self._stopping is not None  # set by start(), before any request
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.hang_s):
                    await self._stopping.wait()
            _drop(request)
            return 499, web.Response(status=499)
        response = web.StreamResponse(status=out.status, headers=_headers(out))
        response.content_length = len(out.body)  # promised in full: what comes short is a cut body
        await response.prepare(request)
        try:
            if out.fault == "reset":
                await response.write(out.body[: len(out.body) // 2])
                # A close after half the body, not a RST: with a RST the client's kernel may drop the
                # bytes it already has, and the client must reliably see a truncated body.
                _drop(request)
                return out.status, response
            body = out.body
            pieces = max(1, min(_TRICKLE_PIECES, len(body)))
            cuts = [len(body) * i // pieces for i in range(pieces + 1)]
            for i in range(pieces):  # the first piece at once, the last one trickle_s later
                if i:
                    await asyncio.sleep(self.config.trickle_s / (pieces - 1))
                await response.write(body[cuts[i] : cuts[i + 1]])
        except ConnectionError:  # the client left mid-body
            return 499, response
        return out.status, response

    def _model_object(self, model: str) -> dict[str, object]:
        # Every model the simulator answers has the one window it is configured with.
        return model_entry(model, self.config.context_window)

    async def _models(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(200, self._models_body)

    async def _stats(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(200, orjson.dumps(self.stats.to_json()))

    async def _reset(self, request: web.BaseRequest) -> web.StreamResponse:
        self.reset_stats()
        return _json(200, b'{"reset":true}')


def _parse_messages(request: web.BaseRequest, raw: bytes, model: str) -> SimRequest:
    # The real API refuses a request that does not say which version of it the client speaks.
    if "anthropic-version" not in request.headers:
        raise RequestError("anthropic-version: header is required")
    return parse_messages(raw, model)


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def _headers(out: Outgoing) -> CIMultiDict[str]:
    headers = CIMultiDict(out.headers or {})
    headers.setdefault("Content-Type", _JSON)  # a scripted content type wins
    return headers


def _drop(request: web.BaseRequest) -> None:
    """Close the connection under a request, whatever has been sent on it."""
    transport = request.transport
    if transport is not None:
        transport.close()


#: how servers that lack a mode refuse it: llama-cpp-python's server validates response_format with
#: pydantic and answers the validation error as a 500; llama.cpp's server names the tools flag
_REFUSALS = {
    "json_schema": (
        "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': "
        "{'expected': \"'text' or 'json_object'\"}}\n"
    ),
    "json_object": 'response_format type must be one of "text" or "json_schema", but got: json_object',
    "tools": "tools param requires --jinja flag",
}


def refused_mode_body(mode: str) -> bytes:
    """The 500 a server that lacks ``mode`` answers (OpenAI-shaped, as those servers shape it)."""
    message = _REFUSALS.get(mode, f"{mode} is not supported")
    return orjson.dumps(
        {"error": {"message": message, "type": "internal_server_error", "param": None, "code": None}}
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # Windows, or a platform without wheels: the standard loop works, slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SimulatorThread(_Observed):
    """The simulator on its own event loop (uvloop when installed) in a background thread.

    ``with SimulatorThread(cfg) as sim: subprocess.run([..., "--base-url", sim.url])``. A script,
    if given, is called on that thread.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        script: Script | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._sim = Simulator(config, script=script, host=host, port=port)
        self._core = self._sim._core
        self._batch_store = self._sim._batch_store
        self.config = self._sim.config
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="corral-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        self.port = self._sim.port

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                runner.run(self._main())
        except BaseException as exc:  # reported to start(); nothing else could see it
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._sim.start()
        try:
            self._ready.set()
            await self._stop.wait()
        finally:
            await self._sim.aclose()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    config: SimConfig | None = None,
    *,
    script: Script | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. ``on_ready(url)`` is called once listening (port 0 picks a free one)."""
    async with Simulator(config, script=script, host=host, port=port) as sim:
        if on_ready is not None:
            on_ready(sim.url)
        await asyncio.Event().wait()


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    config: SimConfig | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Block serving on a fresh event loop (uvloop when installed) until interrupted."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(serve(host, port, config, on_ready=on_ready))
