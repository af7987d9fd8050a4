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
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import uvicorn

from corral.backends import Backend, Mode, is_loopback, open_backend, resolve_model
from corral.cost import Budget, Price, load_prices, price_for, unpriced
from corral.engine._limits import EndpointLimits
from corral.errors import ConfigError
from corral.jobs import ExtractOptions, store_path
from corral.serve.app import ServeSettings, create_app
from corral.serve.connections import ConnectionGuard, GuardedApp, file_limit_for
from corral.serve.jobs import JobManager
from corral.store import RunStore

__all__ = ["read_clients", "serve"]

_BACKLOG = 2048
#: once the jobs are cancelled their streams end within a commit; this only guards against a hang
_GRACE_S = 10

log = logging.getLogger("corral.serve")


async def serve(args: argparse.Namespace) -> int:
    """Run ``corral serve`` until Ctrl-C or SIGTERM; 0 after a clean shutdown."""
    clients = read_clients(args.token_env, args.tokens)
    if not clients and not is_loopback(args.host):
        raise ConfigError(
            f"--host {args.host} can be reached from other machines: set a bearer token in "
            f"${args.token_env}, or give each client its own with --tokens FILE, first (clients then "
            "send 'Authorization: Bearer <token>')"
        )
    prices = load_prices(args.prices) if args.prices else None
    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be positive, got {args.max_body_mb:g}")
    for option, value in (("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)):
        if not value > 0:
            raise ConfigError(f"{option} must be a positive number of seconds, got {value:g}")
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
            allow_plain_http=args.allow_plain_http,
        )
        await resolve_model(backend)  # once, so no job waits on it (or fails on it) later
        _check_mode(args.mode, backend.profile.modes, backend.profile.name)
        budget = _server_budget(args, backend, prices)
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
        defaults = ExtractOptions(
            prompt=args.prompt,
            mode=args.mode,
            max_retries=args.max_retries,
            max_tokens=args.max_tokens,
            reasoning_effort=args.reasoning_effort,
            timeout=args.timeout,
            retries=args.retries,
            concurrency=args.concurrency,
            context_window=args.context_window,
            confidence={"auto": None, "logprobs": True, "off": False}[args.confidence],
            samples=args.samples,
            calibration=args.calibration,
        )
        manager = JobManager(
            store,
            backend,
            limits,
            defaults,
            max_jobs=args.max_jobs,
            max_cost=args.max_cost,
            prices=prices,
            budget=budget,
        )
        settings = ServeSettings(
            clients=clients, max_body=int(args.max_body_mb * 1_000_000), max_items=args.max_items
        )
        app = create_app(manager, settings)
        with _listening(args.host, args.port) as sock, _logging(access=args.access_log):
            guard = ConnectionGuard(
                max_connections=file_limit_for(args.max_connections),
                header_timeout=args.header_timeout,
                body_timeout=args.body_timeout,
            )
            port = sock.getsockname()[1]
            host = f"[{args.host}]" if ":" in args.host else args.host
            model = f"{backend.profile.name}/{backend.model}"
            auth = (
                "no token: loopback only" if not clients else "bearer token required" if len(clients) == 1
                else f"{len(clients)} clients, each with its own token and jobs"
            )  # fmt: skip

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
                GuardedApp(app, guard),
                http=guard.protocol(),
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


#: a client's name in --tokens (it names the client's jobs in the store, and in the log)
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: shorter tokens can be guessed; 16 printable characters are ~100 bits
_MIN_TOKEN = 16


def read_clients(token_env: str, tokens_file: str | None) -> dict[str, str]:
    """Every token the server takes, each to its client's name: the one in ``$token_env`` (client "",
    whose jobs are named as they always were), and each line "NAME TOKEN" of ``tokens_file``.
    Errors name the file and line, never a token."""
    clients: dict[str, str] = {}
    single = os.environ.get(token_env) or None
    if single is not None:
        clients[single] = ""
    if tokens_file is None:
        return clients
    path = Path(tokens_file)
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"--tokens {path} can be read by other users of this machine: chmod 600 {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tokens {path} cannot be read: {exc}") from None
    names: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"--tokens {path}, line {number}"
        name, _, token = line.strip().partition(" ")
        token = token.strip()
        if not _CLIENT_NAME.fullmatch(name) or not token:
            raise ConfigError(f"{where}: write 'NAME TOKEN' (a name of letters, digits, '.', '_' or '-')")
        if len(token) < _MIN_TOKEN or not token.isprintable() or " " in token:
            raise ConfigError(f"{where}: the token of {name!r} must be {_MIN_TOKEN} or more printable "
                              "characters without spaces (e.g. from: openssl rand -hex 24)")  # fmt: skip
        if name in names or token in clients:
            which = f"the name {name!r}" if name in names else "its token"
            raise ConfigError(f"{where}: {which} is used twice; every client needs its own")
        names.add(name)
        clients[token] = name
    if not names:
        raise ConfigError(f"--tokens {path} names no client: write one 'NAME TOKEN' per line")
    return clients


def _server_budget(
    args: argparse.Namespace, backend: Backend, prices: Mapping[str, Price] | None
) -> Budget | None:
    """The cap on what all jobs spend while the server runs; a cap needs a price, checked now."""
    if args.max_cost is None and args.max_total_cost is None:
        return None
    if price_for(backend.model, backend.profile, prices) is None:
        raise unpriced(backend.model, "--max-cost / --max-total-cost")
    if args.max_cost is not None:
        Budget(args.max_cost)  # checks it
    if args.max_total_cost is None:
        return None
    return Budget(args.max_total_cost, option="--max-total-cost")


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
