"""What the API backends share: the HTTP transport, and the backend surface built on it.

:class:`HttpClient` owns one pooled aiohttp session per endpoint, its headers (and so the key), the
timeouts and the host named in messages; every aiohttp failure leaves it as a
:class:`~corral.errors.TransportError` that names the host, never the key. :class:`HttpBackend` holds
a client and gives :mod:`.openai` and :mod:`.anthropic` the parts of the
:class:`~corral.backends.base.Backend` surface that do not depend on the wire format; each of them
adds only its own (``body``, ``parse``, ``error_for``). The module functions are small pieces both
wire formats need.
"""

from __future__ import annotations

import abc
import resource
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from corral.backends._headers import rate_limits
from corral.backends.base import Completion, Profile, Request
from corral.backends.models import context_window_for
from corral.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    ModelNotFound,
    RateLimited,
    ServerError,
    TransportError,
)

if TYPE_CHECKING:
    from corral.errors import ProviderError

__all__ = [
    "SPARE_FILES",
    "HttpBackend",
    "HttpClient",
    "class_for_status",
    "raise_open_file_limit",
    "retry_after",
    "unfence",
]

#: sockets and files corral needs besides one socket per concurrent request
SPARE_FILES = 64
#: the shortest key or password scrubbed from what providers answer
_SECRET_MIN = 8


class HttpClient:
    """A pool of up to ``concurrency`` connections to one endpoint, opened on first use."""

    __slots__ = (
        "_concurrency", "_headers", "_secrets", "_session", "_timeout", "base_url", "endpoint", "host",
    )  # fmt: skip

    def __init__(self, base_url: str, headers: dict[str, str], *, concurrency: int, timeout: float) -> None:
        self.base_url = base_url
        # A base URL may carry credentials (user:pass@host, ?key=...): they stay out of messages and
        # cache keys, which use the host and the endpoint without them.
        parts = urlsplit(base_url)
        port = f":{parts.port}" if parts.port else ""
        self.host = f"{parts.hostname}{port}" if parts.hostname else base_url
        self.endpoint = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
        if (parts.username or parts.password) and any(name.lower() == "authorization" for name in headers):
            # aiohttp refuses both at request time (a ValueError, and a session left open): say it now.
            raise ConfigError(
                f"the base URL for {self.host} carries a user and password, and an API key is set too "
                "(in the environment): give one of them, not both"
            )
        # The key lives only in this header mapping: never in messages, reprs or logs.
        self._headers = headers
        # What a provider's answer must never carry on into records, logs or serve's answers: the key
        # as sent (a server may echo it in an error), and the base URL's credentials.
        # Short strings are left alone: replacing a four-letter password everywhere would corrupt
        # answers (scrubbing runs over batch results too); keys are long.
        secrets = {parts.password or ""}
        for name, value in headers.items():
            if name.lower() in ("authorization", "x-api-key", "api-key"):
                secrets.update({value, value.removeprefix("Bearer ").strip()})
        self._secrets = tuple(
            sorted(
                (secret.encode() for secret in secrets if len(secret) >= _SECRET_MIN), key=len, reverse=True
            )
        )
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HttpClient(host={self.host!r})"

    def _open_session(self) -> aiohttp.ClientSession:
        raise_open_file_limit(self._concurrency + SPARE_FILES)
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=min(self._timeout, 15.0))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=self._headers,
            # APIs do not set cookies we need; the default jar parses every response for them.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One HTTP exchange on the pooled session, with transport failures as :class:`TransportError`.

        ``headers`` add to (or replace) the session's: a multipart upload names its own content type."""
        session = self._session or self._open_session()
        try:
            # Redirects are not followed: aiohttp drops only Authorization on the way, so an
            # x-api-key (Anthropic's) would go along to whatever host the answer names.
            async with session.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    raise self._redirected(response)
                raw = await response.read()
                # An error body goes into messages and records: scrubbed of what was sent to get it.
                return response.status, self.scrub(raw) if response.status >= 400 else raw, response.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, streaming=False) from None

    def scrub(self, raw: bytes) -> bytes:
        """``raw`` with the key and the base URL's credentials replaced by ``***``."""
        for secret in self._secrets:
            if secret in raw:
                raw = raw.replace(secret, b"***")
        return raw

    async def lines(
        self, url: str, error_for: Callable[[int, bytes, Mapping[str, str]], ProviderError]
    ) -> AsyncIterator[bytes]:
        """The non-empty lines of a GET response body, as they arrive (batch results can be large).

        An HTTP error answer is raised as ``error_for`` makes it, before any line."""
        session = self._session or self._open_session()
        # A long download may outlast the session's total timeout; only a stalled read is a failure.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout)
        try:
            async with session.get(url, timeout=timeout, allow_redirects=False) as response:
                if 300 <= response.status < 400:
                    raise self._redirected(response)
                if response.status >= 400:
                    raise error_for(response.status, self.scrub(await response.read()), response.headers)
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        pending += chunk[start:end]
                        if line := bytes(pending).strip():
                            yield self.scrub(line)  # a batch's error lines are provider text too
                        pending.clear()
                        start = end + 1
                    pending += chunk[start:]
                if line := bytes(pending).strip():
                    yield self.scrub(line)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, streaming=True) from None

    def _redirected(self, response: aiohttp.ClientResponse) -> ConfigError:
        """A redirect, not followed (the key would follow it): named by the origin it points to. A
        usage error, not a provider's: every request would be redirected, and the fix is the URL."""
        target = urlsplit(response.headers.get("Location", ""))
        where = f"{target.scheme}://{target.hostname}" if target.hostname else "elsewhere on it"
        return ConfigError(
            f"{self.host} answered HTTP {response.status}, redirecting to {where}; corral does not follow "
            "redirects (the API key would go along): set the base URL to where the API really is"
        )

    def _failure(self, exc: TimeoutError | aiohttp.ClientError, *, streaming: bool) -> TransportError:
        """aiohttp's failure as a :class:`TransportError` naming the host (never the key)."""
        if isinstance(exc, TimeoutError):  # first: aiohttp's timeouts are ClientErrors too
            if streaming:
                return TransportError(f"{self.host} stopped sending for {self._timeout:g} s (timeout)")
            return TransportError(f"no answer from {self.host} within {self._timeout:g} s (timeout)")
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or exc
            return TransportError(f"cannot connect to {self.host}: {reason}", connect=True)
        return TransportError(f"connection to {self.host} failed: {type(exc).__name__}: {exc}")

    def decode(self, raw: bytes) -> dict[str, Any]:
        """A JSON object body, or :class:`TransportError` naming what came instead."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransportError(f"{self.host} sent a body that is not JSON: {raw[:120]!r}") from None
        if not isinstance(data, dict):
            raise TransportError(f"{self.host} sent JSON that is not an object: {raw[:120]!r}")
        return data


class HttpBackend(abc.ABC):
    """A backend that speaks one JSON wire format to one endpoint through an :class:`HttpClient`.

    ``send``, ``lines`` and ``decode`` are also what the batch APIs (:mod:`corral.backends.batch`) speak
    over, so a batch job uses the online backend's session, URL and key.
    """

    def __init__(
        self, http: HttpClient, url: str, *, model: str, profile: Profile, key_env: str | None
    ) -> None:
        self._http = http
        self._url = url  # where complete() posts
        self._model = model
        self._profile = profile
        self._key_env = key_env  # named in the fix for a refused key
        self._context_window = context_window_for(model) if model else None

    @abc.abstractmethod
    def body(self, request: Request) -> dict[str, Any]:
        """The request body, as sent online and as written into a batch file (one builder for both)."""

    @staticmethod
    @abc.abstractmethod
    def parse(data: dict[str, Any]) -> Completion:
        """A reply body (online, or from a batch result line) as a :class:`Completion`."""

    @abc.abstractmethod
    def error_for(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The :mod:`corral.errors` class for an HTTP error answer (online, or a batch result line)."""

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._http.endpoint

    @property
    def context_window(self) -> int | None:
        """The model's window: what the server reported, else what its provider documents."""
        return self._context_window

    def set_context_window(self, tokens: int | None) -> None:
        """The window as learned (a server's report) or as the user set it."""
        self._context_window = tokens

    @property
    def base_url(self) -> str:
        """The URL the API's paths are joined to, as the backend normalised it."""
        return self._http.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._http.base_url!r}, model={self._model!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(self, request: Request) -> Completion:
        # The client's send and decode are called directly: the online path gains no frame.
        status, raw, headers = await self._http.send("POST", self._url, orjson.dumps(self.body(request)))
        if status >= 400:
            error = self.error_for(status, raw, headers)
            error.rate_limits = rate_limits(headers)
            raise error
        completion = self.parse(self._http.decode(raw))
        completion.rate_limits = rate_limits(headers)
        return completion

    def send(
        self,
        method: str,
        url: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Coroutine[Any, Any, tuple[int, bytes, Mapping[str, str]]]:
        """One HTTP exchange on the pooled session, with transport failures as :class:`TransportError`.

        ``headers`` add to (or replace) the session's: a multipart upload names its own content type.
        This returns the client's coroutine itself (await it): a frame around it would only cost."""
        return self._http.send(method, url, data, headers=headers)

    def lines(self, url: str) -> AsyncIterator[bytes]:
        """The non-empty lines of a GET response body, as they arrive (batch results can be large).

        The client's generator itself, not one that re-yields it: a result file can be long."""
        return self._http.lines(url, self.error_for)

    def decode(self, raw: bytes) -> dict[str, Any]:
        """A JSON object body, or :class:`TransportError` naming what came instead."""
        return self._http.decode(raw)


def class_for_status(status: int | None) -> type[ProviderError]:
    """The :mod:`corral.errors` class for an HTTP status; without one, :class:`ServerError` (retryable)."""
    if status is None or status in (408, 409) or status >= 500:
        return ServerError
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthError
    if status == 404:
        return ModelNotFound
    return BadRequest


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if it said."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date; the scheduler falls back to its own backoff
    return None


def unfence(text: str) -> str:
    """Models outside a JSON mode often wrap the object in a ```json fence; validate what is inside."""
    stripped = text.strip()
    if not stripped.startswith("```"):
        return text
    body = stripped[3:]
    body = body[body.find("\n") + 1 :] if "\n" in body else body
    return body[: body.rfind("```")] if body.rstrip().endswith("```") else body


def raise_open_file_limit(needed: int) -> None:
    """aiohttp opens a socket per concurrent request; the common soft limit of 1,024 is too low.

    Raise the soft limit toward the hard one; if even that cannot fit, say so before sending anything.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise ConfigError(
            f"concurrency needs about {needed} open files but this process may open only {hard}: "
            f"lower --concurrency below {hard - SPARE_FILES} or raise the hard limit (ulimit -Hn)"
        )
