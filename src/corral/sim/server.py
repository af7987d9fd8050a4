"""The HTTP side: aiohttp's low-level server, and three ways to run it.

- :class:`Simulator`: ``async with`` in the current event loop (pytest-asyncio tests, benchmarks).
- :class:`SimulatorThread`: ``with`` in a background thread with its own loop (sync code, tests that
  run the CLI in a subprocess).
- :func:`serve`: until cancelled (the ``corral sim`` command); :func:`run` does it on uvloop.

The low-level ``aiohttp.web.Server`` with a dict of routes skips the Application machinery (router,
middlewares, signals); with access logging off, a request costs little more than parsing its body.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from corral.sim.config import LogEntry, SimConfig, SimStats
from corral.sim.core import Script, SimCore
from corral.sim.protocol import RequestError, error_body, parse_request

__all__ = ["Simulator", "SimulatorThread", "run", "serve"]

_JSON = "application/json"
_SHUTDOWN_GRACE = 1.0  # seconds closing waits for requests still being answered (slow latencies)
_BACKLOG = 4096  # a thousand clients connecting at once must not overflow the accept queue
_Route = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _Observed:
    """What tests read from a running simulator, whichever way it runs."""

    _core: SimCore
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
    def stats(self) -> SimStats:
        return self._core.stats()

    @property
    def log(self) -> list[LogEntry]:
        """The request log, oldest first (at most ``config.log_size`` entries)."""
        return list(self._core.log)

    @property
    def script_errors(self) -> list[Exception]:
        """Exceptions the script raised; each of those requests was answered with a 500."""
        return list(self._core.script_errors)

    def reset_stats(self) -> None:
        """Zero the counters and clear the log and the per-text repeat counts."""
        self._core.reset()


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
        self._runner: web.ServerRunner | None = None
        self._routes: dict[tuple[str, str], _Route] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
            ("GET", "/sim/stats"): self._stats,
            ("POST", "/sim/reset"): self._reset,
        }
        self._models_body = orjson.dumps({"object": "list", "data": [_model_object(self.config.model)]})

    async def start(self) -> None:
        if self._runner is not None:
            return
        # access_log=None: no per-request logging at all, the ring buffer is the log.
        server = web.Server(self._handle, access_log=None)
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
            return _json(200, orjson.dumps(_model_object(path.removeprefix("/v1/models/"))))
        if any(p == path for _, p in self._routes):
            return _json(405, error_body(405, f"Method {request.method} not allowed for {path}"))
        return _json(404, error_body(404, f"Invalid URL ({request.method} {path})"))

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        core = self._core
        arrived = time.monotonic()
        index = core.begin()
        status, mode, model, text = 500, "", self.config.model, ""
        try:
            raw = await request.read()
            try:
                parsed = parse_request(raw, model)
            except RequestError as exc:
                status = 400
                return _json(400, error_body(400, exc.message, param=exc.param))
            mode, model, text = parsed.mode, parsed.model, parsed.user_text
            out = core.reply(parsed, index)
            if out.delay > 0:
                await asyncio.sleep(out.delay)
            status = out.status
            if out.headers is None:
                return web.Response(body=out.body, status=status, content_type=_JSON)
            headers = CIMultiDict(out.headers)
            headers.setdefault("Content-Type", _JSON)  # a scripted content type wins
            return web.Response(body=out.body, status=status, headers=headers)
        except asyncio.CancelledError:
            status = 499  # the server shut down (or the client left) before the answer was sent
            raise
        finally:
            core.finish(arrived, index, model=model, mode=mode, status=status, text=text)

    async def _models(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(200, self._models_body)

    async def _stats(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(200, orjson.dumps(self.stats.to_json()))

    async def _reset(self, request: web.BaseRequest) -> web.StreamResponse:
        self.reset_stats()
        return _json(200, b'{"reset":true}')


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "corral-sim"}


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
