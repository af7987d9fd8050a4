"""Choosing a backend from ``--model`` / ``--base-url``: providers are rows of data, not branches.

    (no model) or "local"   the embedded llama.cpp model (default; offline, no key)
    "openai/gpt-4o-mini"    OpenAI, key from $OPENAI_API_KEY
    "ollama/llama3.2"       a local Ollama server (http://localhost:11434/v1), no key
    "vllm/NAME", "llamacpp/NAME"   local vLLM / llama.cpp servers on their default ports
    "anthropic/claude-haiku-4-5"   Anthropic's Messages API, key from $ANTHROPIC_API_KEY; at
                            $ANTHROPIC_BASE_URL if set, or at --base-url URL when given with it
    --base-url URL          any OpenAI-compatible server; --model is then the name sent to it

Every problem found here (missing key, unknown prefix, extra not installed, a key that would go out
over plain http) is raised before any item is sent, as a one-line :class:`~corral.errors.ConfigError`
that names the fix.

    base        the protocol every backend meets (Backend: Request → Completion) and its data types
    models      what each model takes in a request (output bound, temperature, reasoning effort)
    openai      the OpenAI Chat Completions wire over aiohttp (OpenAI, vLLM, llama.cpp, Ollama, ...)
    anthropic   the Anthropic Messages wire over aiohttp
    _http       what the API backends share: one pooled session per endpoint, errors that name the host
    _headers    providers' rate-limit headers → RateLimitInfo
    local/      the embedded model (llama.cpp with a schema grammar) and its few-shot prompts
    batch/      the providers' batch APIs (OpenAI Batch, Anthropic Message Batches)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from corral.backends.anthropic import DEFAULT_BASE_URL, KEY_ENV, AnthropicBackend
from corral.backends.base import Backend, Completion, Message, Mode, Profile, Request
from corral.backends.models import ModelTraits
from corral.backends.openai import OpenAIBackend
from corral.errors import ConfigError, ProviderError

__all__ = [
    "PROVIDERS",
    "Backend",
    "Completion",
    "Message",
    "Mode",
    "Profile",
    "Provider",
    "Request",
    "is_loopback",
    "open_backend",
    "resolve_model",
]

OPENAI_PROFILE = Profile(
    "openai",
    (Mode.TOOLS, Mode.JSON_SCHEMA, Mode.JSON_OBJECT),
    strict=True,
    tokenizer="openai",
    batch_api="openai",
    logprobs=True,
    # Every OpenAI chat model takes max_completion_tokens; reasoning models refuse max_tokens.
    traits=ModelTraits(max_tokens_field="max_completion_tokens"),
)
# vLLM, llama.cpp's server, Ollama and most others accept response_format json_schema; not all of
# them take tools, and none needs OpenAI's strict rewriting of the schema. A server given by URL may
# offer OpenAI's batch endpoints (proxies and gateways do); if it does not, --batch says so at once.
COMPATIBLE_PROFILE = Profile(
    "openai-compatible", (Mode.JSON_SCHEMA, Mode.TOOLS, Mode.JSON_OBJECT), batch_api="openai"
)
# The same servers reached by prefix run on the user's machine: priced at nothing, and no batch API.
SELF_HOSTED_PROFILE = dataclasses.replace(
    COMPATIBLE_PROFILE, name="self-hosted", self_hosted=True, batch_api=None
)


@dataclass(frozen=True, slots=True)
class Provider:
    """An OpenAI-format endpoint reachable by a model prefix."""

    base_url: str
    profile: Profile
    #: environment variable holding the key; ``required`` says whether the run may go without it
    key_env: str | None = None
    key_required: bool = False
    #: environment variable that moves the provider elsewhere (a proxy, a gateway, a region), as the
    #: provider's own SDK reads it
    base_url_env: str | None = None
    #: the context window its models run with unless the server says otherwise (None: by model name)
    context_window: int | None = None


PROVIDERS: dict[str, Provider] = {
    "openai": Provider(
        "https://api.openai.com/v1",
        OPENAI_PROFILE,
        "OPENAI_API_KEY",
        key_required=True,
        base_url_env="OPENAI_BASE_URL",
    ),
    # Ollama runs a model with num_ctx 2048 unless told otherwise, and cuts a longer prompt to fit
    # without a word (newer versions start at 4096; the smaller is assumed): pass --context-window
    # with the num_ctx you set.
    "ollama": Provider("http://localhost:11434/v1", SELF_HOSTED_PROFILE, context_window=2048),
    "vllm": Provider("http://localhost:8000/v1", SELF_HOSTED_PROFILE, "VLLM_API_KEY"),
    "llamacpp": Provider("http://localhost:8080/v1", SELF_HOSTED_PROFILE),
}
LOCAL_MODEL = "local"


def open_backend(
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    concurrency: int = 16,
    timeout: float = 120.0,
    allow_plain_http: bool = False,
) -> Backend:
    """The backend for a model name, checked now so a bad set-up fails before any item is sent.

    With ``base_url`` and no ``model``, call :func:`resolve_model` (async) to ask the server.
    ``allow_plain_http``: send a key over ``http://`` to a host that is not loopback (refused
    otherwise: anyone on the way reads it).
    """
    if model is not None and model.startswith("anthropic/"):
        # Its own wire, not an OpenAI-format provider; --base-url moves it (to a simulator, a proxy).
        name = model.removeprefix("anthropic/")
        return _anthropic(name, base_url, api_key_env=api_key_env, concurrency=concurrency,
                          timeout=timeout, allow_plain_http=allow_plain_http)  # fmt: skip
    prefix, slash, name = (model or "").partition("/")
    provider = PROVIDERS.get(prefix) if slash and name else None
    if provider is not None:
        return _provider(provider, prefix, name, base_url, api_key_env=api_key_env,
                         concurrency=concurrency, timeout=timeout,
                         allow_plain_http=allow_plain_http)  # fmt: skip
    if base_url is not None:
        env = api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env) or None  # local servers usually need none
        _refuse_key_in_clear(base_url, key, env, allowed=allow_plain_http)
        return OpenAIBackend(
            base_url=base_url,
            model=model or "",
            profile=COMPATIBLE_PROFILE,
            api_key=key,
            key_env=env,
            concurrency=concurrency,
            timeout=timeout,
        )
    if model is None or model == LOCAL_MODEL or model.startswith(f"{LOCAL_MODEL}:"):
        from corral.backends.local._llama import LocalBackend  # imports llama.cpp only when asked for

        path = model.partition(":")[2] if model else ""
        return LocalBackend(path or None, concurrency=concurrency)
    known = ", ".join(f"{p}/NAME" for p in [*PROVIDERS, "anthropic"])
    raise ConfigError(
        f"unknown model {model!r}: use 'local' (the embedded model), {known}, "
        "or --base-url URL for any OpenAI-compatible server"
    )


def _provider(
    provider: Provider,
    prefix: str,
    name: str,
    base_url: str | None,
    *,
    api_key_env: str | None,
    concurrency: int,
    timeout: float,
    allow_plain_http: bool,
) -> OpenAIBackend:
    """A provider reached by its prefix: its profile, prices and model naming, at its own URL or at
    the one given (``--base-url``, or the variable its SDK reads: a proxy, a gateway, a region)."""
    moved = base_url or (os.environ.get(provider.base_url_env) if provider.base_url_env else None)
    key_env = api_key_env or provider.key_env
    key = os.environ.get(key_env) if key_env is not None else None
    # The provider's own endpoint refuses every request without a key; a gateway may hold its own.
    if provider.key_required and not key and not moved:
        raise ConfigError(
            f"no API key for {prefix}: set the {key_env} environment variable (or --api-key-env NAME)"
        )
    url = moved or provider.base_url
    _refuse_key_in_clear(url, key, key_env or "", allowed=allow_plain_http)
    backend = OpenAIBackend(
        base_url=url,
        model=name,
        profile=provider.profile,
        api_key=key,
        key_env=key_env,
        concurrency=concurrency,
        timeout=timeout,
    )
    if provider.context_window is not None:
        backend.set_context_window(provider.context_window)
    return backend


def _anthropic(
    name: str,
    base_url: str | None,
    *,
    api_key_env: str | None,
    concurrency: int,
    timeout: float,
    allow_plain_http: bool,
) -> AnthropicBackend:
    if not name:
        raise ConfigError("anthropic/ needs a model name, like anthropic/claude-haiku-4-5")
    key_env = api_key_env or KEY_ENV
    key = os.environ.get(key_env)
    if not key:
        raise ConfigError(
            f"no API key for anthropic: set the {key_env} environment variable (or --api-key-env NAME)"
        )
    url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
    _refuse_key_in_clear(url, key, key_env, allowed=allow_plain_http)
    return AnthropicBackend(
        model=name,
        api_key=key,
        base_url=url,
        key_env=key_env,
        concurrency=concurrency,
        timeout=timeout,
    )


def _refuse_key_in_clear(url: str, key: str | None, key_env: str, *, allowed: bool) -> None:
    """A key (or a base URL's password) is never sent over plain http to another machine unless
    asked: anyone on the network path reads it. Loopback stays open (the simulator, a local vLLM
    with a key), and so does http without any key (local servers, a trusted gateway)."""
    parts = urlsplit(url)
    if allowed or parts.scheme.lower() != "http" or is_loopback(parts.hostname):
        return
    if key:
        what = f"the key in ${key_env}"
        unset = f"unset {key_env} if the server needs no key, "
    elif parts.username or parts.password:
        what, unset = "the user and password in the base URL", ""
    else:
        return
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    raise ConfigError(
        f"{what} would be sent unencrypted to http://{host}: use an https:// base URL, "
        f"{unset}or pass --allow-plain-http (allow_plain_http=True) if the network to it is trusted"
    )


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: localhost, 127.0.0.0/8 or ::1 (bracketed or not). A name
    that merely resolves there today does not count: it may resolve anywhere tomorrow."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 reaches 127.0.0.1; Python counts it as loopback only from 3.13 on.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


async def resolve_model(backend: Backend) -> None:
    """Fill in the model name of a ``--base-url`` backend given none (the server's first model), and
    learn the context window a server other than OpenAI's reports for its model (vLLM's
    ``max_model_len``, ``context_length`` of gateways like OpenRouter), from ``GET /models``."""
    if not isinstance(backend, OpenAIBackend) or backend.profile is OPENAI_PROFILE:
        return
    try:
        served = await backend.served_models()
    except ProviderError:
        if not backend.model:
            raise
        return  # a server without GET /models: its window stays what is known of the model's name
    if not backend.model:
        if not served:
            raise ConfigError("the server lists no models: pass --model NAME")
        backend.set_model(served[0].id)
    reported = next((entry.context_window for entry in served if entry.id == backend.model), None)
    if reported is not None:
        backend.set_context_window(reported)
