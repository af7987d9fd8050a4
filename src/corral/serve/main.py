"""Starting and stopping ``corral serve``: one backend, one set of limits, one store, one uvicorn.

Everything that can be refused is refused before the port opens: a non-loopback address without a
token, a store that is not corral's, a model that cannot be reached or named. The socket is bound
here (port 0 picks a free one) and handed to uvicorn, so the address printed is the real one.

Ctrl-C or SIGTERM first cancels the running jobs (each commits what it finished), which ends their
streams, so the connections close and uvicorn's graceful shutdown completes at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator

import uvicorn

from corral.backends import Mode, open_backend, resolve_model
from corral.cli_run import store_path
from corral.errors import ConfigError
from corral.limits import EndpointLimits
from corral.serve.app import ServeSettings, create_app
from corral.serve.jobs import JobManager, JobOptions
from corral.store import RunStore

__all__ = ["is_loopback", "serve"]

_BACKLOG = 2048
#: once the jobs are cancelled their streams end within a commit; this only guards against a hang
_GRACE_S = 10

log = logging.getLogger("corral.serve")


async def serve(args: argparse.Namespace) -> int:
    """Run ``corral serve`` until Ctrl-C or SIGTERM; 0 after a clean shutdown."""
    token = os.environ.get(args.token_env) or None
    if token is None and not is_loopback(args.host):
        raise ConfigError(
            f"--host {args.host} can be reached from other machines: set a bearer token in "
            f"${args.token_env} first (clients then send 'Authorization: Bearer <token>')"
        )
    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be positive, got {args.max_body_mb:g}")
    path = store_path(None, args.store)
    store = RunStore.open(path)
    backend = None
    try:
        backend = open_backend(
            args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
        await resolve_model(backend)  # once, so no job waits on it (or fails on it) later
        _check_mode(args.mode, backend.profile.modes, backend.profile.name)
        ceiling = backend.profile.max_concurrency
        limits = EndpointLimits(
            rpm=args.rpm,
            tpm=args.tpm,
            adaptive=not args.no_adaptive,
            concurrency=min(args.concurrency, ceiling) if ceiling else args.concurrency,
            slow_start=not backend.profile.self_hosted,
            # What an earlier run (or server) learned: paced from the first job's first request.
            known=store.known_limits(backend.endpoint, backend.model),
        )
        options = JobOptions(
            prompt=args.prompt,
            mode=args.mode,
            max_retries=args.max_retries,
            max_tokens=args.max_tokens,
            reasoning_effort=args.reasoning_effort,
            timeout=args.timeout,
            retries=args.retries,
            concurrency=args.concurrency,
        )
        manager = JobManager(store, backend, limits, options, max_jobs=args.max_jobs)
        settings = ServeSettings(
            token=token, max_body=int(args.max_body_mb * 1_000_000), max_items=args.max_items
        )
        app = create_app(manager, settings)
        with _listening(args.host, args.port) as sock, _logging(access=args.access_log):
            port = sock.getsockname()[1]
            host = f"[{args.host}]" if ":" in args.host else args.host
            model = f"{backend.profile.name}/{backend.model}"
            auth = "bearer token required" if token else "no token: loopback only"

            def ready() -> None:
                print(
                    f"corral serve: listening on http://{host}:{port}/ ({model}; {auth}; store {path}; "
                    "Ctrl-C stops)",
                    file=sys.stderr,
                    flush=True,
                )

            def stopping(name: str) -> None:
                running = manager.stop_all()
                jobs = f"; {running} running jobs stopped, their finished results kept" if running else ""
                print(f"corral serve: stopping ({name}){jobs}", file=sys.stderr, flush=True)

            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=args.access_log,
                lifespan="on",
                timeout_graceful_shutdown=_GRACE_S,
                server_header=False,
                proxy_headers=False,
            )
            server = _Server(config, on_ready=ready, on_stop=stopping)
            try:
                await server.serve(sockets=[sock])
            finally:
                await manager.aclose()  # after a second Ctrl-C uvicorn skips the lifespan's end
    finally:
        if backend is not None:
            await backend.aclose()
        store.close()
    return 0


class _Server(uvicorn.Server):
    """uvicorn, told when it is listening, and stopping the jobs first when asked to stop."""

    def __init__(
        self, config: uvicorn.Config, *, on_ready: Callable[[], None], on_stop: Callable[[str], None]
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._on_stop = on_stop

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own handlers re-raise the signal after shutting down, which would turn a clean
        # stop into a KeyboardInterrupt; these only start the shutdown.
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not POSIX
                continue
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            self._on_stop(signal.Signals(sig).name)
        super().handle_exit(sig, None)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to anything


def _check_mode(mode: str | None, modes: tuple[Mode, ...], backend: str) -> None:
    if mode is not None and mode not in modes:
        supported = ", ".join(m.value for m in modes)
        raise ConfigError(f"the {backend} backend does not support --mode {mode}: use {supported}")


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[socket.socket]:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def _logging(*, access: bool) -> Iterator[None]:
    """Our job log and uvicorn's warnings on stderr (its chatter about starting and stopping not);
    every request too with --access-log. Never a header: no token, no key."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("corral serve: %(message)s"))
    levels = {"corral.serve": logging.INFO, "uvicorn.error": logging.WARNING, "uvicorn.access": logging.INFO}
    if not access:
        levels["uvicorn.access"] = logging.WARNING
    saved = []
    for name, level in levels.items():
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
