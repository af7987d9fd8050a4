"""Connections of ``corral serve``: how many, and how long a client may take to ask.

uvicorn reads a request's head and body for as long as the client likes, and accepts connections
until the process runs out of file descriptors (then it stops accepting anything, /healthz included).
A client that opens a thousand sockets and sends nothing, or a byte every few seconds (slowloris),
needs no token to do that. The :class:`ConnectionGuard` keeps the server answering:

- **a head timeout**: a connection that has not sent a whole request head within ``header_timeout``
  of its first byte (or of connecting) is closed. Between requests, uvicorn's keep-alive timeout
  closes an idle connection;
- **a body timeout**: a request's whole body must arrive within ``body_timeout`` of its head; a
  client that stalls is treated as gone (its connection is closed, nothing is started);
- **a connection cap**: at the cap, a new connection takes the place of the connection that has
  waited longest without a request in progress (a silent or slow socket, or an idle keep-alive).
  Only when every connection is busy with a request is the new one refused, with a 503. So idle
  sockets can never lock out a real request, however many are opened;
- **file descriptors**: the soft limit is raised to what the cap needs (up to the hard limit), and
  the cap lowered to what the limit allows, so the server never hits EMFILE.

The protocol side (connections opened, bytes heard, closed) is a subclass of uvicorn's h11 protocol
that only overrides asyncio's public protocol methods; the request side (a request began, ended) is
ASGI middleware. The two meet on the client's address, which identifies a TCP connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from corral.errors import ConfigError

__all__ = ["ConnectionGuard", "GuardedApp", "file_limit_for"]

#: descriptors kept for everything that is not a client connection: the store and its journal,
#: the provider's connection pool, the listening socket, threads' files, logs
_RESERVED_FDS = 128

log = logging.getLogger("corral.serve")

Peer = tuple[str, int]

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%b"
)
_BUSY_BODY = (
    b'{"error": {"type": "too_many_connections", "message": "every connection of this server is busy '
    b'with a request (--max-connections); try again shortly"}}'
)


@dataclass(slots=True, eq=False)
class _Connection:
    transport: asyncio.BaseTransport
    #: a request is being answered: never closed to make room
    busy: bool = False
    #: closes the connection if its request head has not arrived by then; None: not timed now
    deadline: asyncio.TimerHandle | None = None

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None


class ConnectionGuard:
    """Counts the server's connections, times their requests' heads, and makes room at the cap."""

    def __init__(self, *, max_connections: int, header_timeout: float, body_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._open: dict[Peer, _Connection] = {}
        #: connections with no request in progress, longest waiting first
        self._waiting: dict[Peer, _Connection] = {}

    # --- the protocol side -------------------------------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """A connection arrived: True to serve it (after making room if needed), False if refused."""
        peer = _peer(transport.get_extra_info("peername"))
        if len(self._open) >= self.max_connections:
            if self._waiting:
                self._close(next(iter(self._waiting)))
            else:
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(_BUSY % (len(_BUSY_BODY), _BUSY_BODY))
                transport.close()
                return False
        if peer is None:  # not TCP: not tracked, but still served
            return True
        connection = _Connection(transport)
        self._open[peer] = self._waiting[peer] = connection
        self._arm(peer, connection)
        return True

    def heard(self, transport: asyncio.BaseTransport) -> None:
        """Bytes arrived: if no request is in progress they begin one, whose head is now timed."""
        peer = _peer(transport.get_extra_info("peername"))
        connection = self._open.get(peer) if peer is not None else None
        if (
            peer is not None
            and connection is not None
            and not connection.busy
            and connection.deadline is None
        ):
            self._arm(peer, connection)

    def lost(self, transport: asyncio.BaseTransport) -> None:
        peer = _peer(transport.get_extra_info("peername"))
        if peer is None:
            return
        connection = self._open.pop(peer, None)
        self._waiting.pop(peer, None)
        if connection is not None:
            connection.disarm()

    # --- the request side --------------------------------------------------------------------------

    def began(self, peer: Peer | None) -> None:
        """The request's head is complete (the app is called)."""
        connection = self._open.get(peer) if peer is not None else None
        if peer is not None and connection is not None:
            connection.disarm()
            connection.busy = True
            self._waiting.pop(peer, None)

    def ended(self, peer: Peer | None) -> None:
        """The response is complete: the connection waits for its next request (at the back)."""
        connection = self._open.get(peer) if peer is not None else None
        if peer is not None and connection is not None:
            connection.busy = False
            self._waiting.pop(peer, None)
            self._waiting[peer] = connection

    def stalled(self, peer: Peer | None) -> None:
        """The request's body did not arrive in time: the client is dropped."""
        if peer is not None:
            self._close(peer)

    # --- inside ------------------------------------------------------------------------------------

    def _arm(self, peer: Peer, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        connection.deadline = loop.call_later(self.header_timeout, self._too_slow, peer)

    def _too_slow(self, peer: Peer) -> None:
        connection = self._open.get(peer)
        if connection is not None and not connection.busy:
            self._close(peer)

    def _close(self, peer: Peer) -> None:
        connection = self._open.pop(peer, None)
        self._waiting.pop(peer, None)
        if connection is not None:
            connection.disarm()
            connection.transport.close()

    def protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's h11 protocol, reporting to this guard (pass it as ``uvicorn.Config(http=...)``)."""
        guard = self

        class GuardedProtocol(H11Protocol):
            _refused = False

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                if not guard.admit(transport):
                    self._refused = True
                    return
                super().connection_made(transport)

            def data_received(self, data: bytes) -> None:
                guard.heard(self.transport)
                super().data_received(data)

            def connection_lost(self, exc: Exception | None) -> None:
                if self._refused:
                    return
                guard.lost(self.transport)
                super().connection_lost(exc)

        return GuardedProtocol


class GuardedApp:
    """ASGI middleware telling the guard when a request begins and ends, and timing its body."""

    def __init__(self, app: Any, guard: ConnectionGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = _peer(scope.get("client"))
        guard = self.guard
        guard.began(peer)
        deadline = asyncio.get_running_loop().time() + guard.body_timeout
        body_done = False

        async def timed_receive() -> Any:
            # Only while the body arrives: afterwards receive() waits for a disconnect as long as
            # a stream lasts, which is no stall.
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                guard.stalled(peer)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        try:
            await self.app(scope, timed_receive, send)
        finally:
            guard.ended(peer)


def _peer(address: Any) -> Peer | None:
    if isinstance(address, tuple | list) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def file_limit_for(max_connections: int) -> int:
    """Raise the soft limit on open files to what ``max_connections`` needs (as far as the hard
    limit allows) and return how many connections fit; a ConfigError if too few do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass  # keep the soft limit there is
    fits = max_connections if soft == resource.RLIM_INFINITY else min(max_connections, soft - _RESERVED_FDS)
    if fits < 16:
        raise ConfigError(
            f"this process may open only {soft} files, too few to serve: raise it (ulimit -n) to at least "
            f"{_RESERVED_FDS + 64}"
        )
    if fits < max_connections:
        log.warning(
            "at most %d connections (--max-connections %d): the open-files limit is %d (ulimit -n)",
            fits, max_connections, soft,
        )  # fmt: skip
    return fits
