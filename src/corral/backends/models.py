"""What a model takes in a request, as data: which field bounds its output, whether it takes a
temperature, whether it takes a reasoning effort.

OpenAI's reasoning models (the o-series, the gpt-5 family) refuse ``max_tokens`` ("Use
'max_completion_tokens' instead", ``unsupported_parameter``) and any ``temperature`` but their
default (``unsupported_value``), online and in batch files alike. Every OpenAI chat model takes
``max_completion_tokens`` (``max_tokens`` is deprecated there); other OpenAI-compatible servers
(vLLM, llama.cpp, Ollama) know ``max_tokens``, and only some know the newer field. The rules match a
model by name wherever it is served, so a gateway in front of OpenAI (its model named
``openai/gpt-5-mini`` or ``gpt-5-mini``) is sent what OpenAI accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT", "REASONING", "TOO_LONG_FIX", "ModelTraits", "context_window_for", "traits_for"]


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """The request fields a model takes."""

    #: the body field that bounds the reply's tokens: "max_tokens" or "max_completion_tokens"
    max_tokens_field: str = "max_tokens"
    #: takes a ``temperature`` other than its default (False: none is sent, the default applies)
    temperature: bool = True
    #: takes ``reasoning_effort`` (how long a reasoning model thinks before it answers)
    reasoning_effort: bool = False
    #: takes ``logprobs`` (OpenAI's reasoning models refuse it)
    logprobs: bool = True


#: what most OpenAI-compatible servers take: max_tokens and a temperature
DEFAULT = ModelTraits()
#: OpenAI's reasoning models: the output bound in max_completion_tokens, and no temperature
REASONING = ModelTraits(
    max_tokens_field="max_completion_tokens", temperature=False, reasoning_effort=True, logprobs=False
)

#: model names (the last path segment, so ``openai/o3-mini`` too) → traits, first match wins
_RULES: tuple[tuple[re.Pattern[str], ModelTraits], ...] = (
    (re.compile(r"^(?:o\d|gpt-5)(?:$|[-.:_])"), REASONING),
)


def traits_for(model: str, default: ModelTraits) -> ModelTraits:
    """The traits of ``model``: a rule's, or the provider's ``default``."""
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, traits in _RULES:
        if pattern.search(name):
            return traits
    return default


#: how to fix a request over the model's context window (said with every such error)
TOO_LONG_FIX = (
    " — the text is too long for the model: let corral cut it into chunks (drop --no-chunking), "
    "or use a model with a larger context window"
)

#: context windows (prompt and reply together, in tokens) as the providers document them, by model
#: name (the last path segment), first match wins. Where a provider documents a larger window behind
#: an opt-in (Anthropic's 1M-token beta), the default one is listed: the harsher reading.
_WINDOWS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^gpt-5(?:$|[-.:_])"), 400_000),
    (re.compile(r"^gpt-4\.1(?:$|[-.:_])"), 1_047_576),
    (re.compile(r"^(?:gpt-4o|chatgpt-4o|gpt-4-turbo)(?:$|[-.:_])"), 128_000),
    (re.compile(r"^o\d(?:$|[-.:_])"), 200_000),
    (re.compile(r"^gpt-3\.5-turbo"), 16_385),
    (re.compile(r"^claude-"), 200_000),
)


def context_window_for(model: str) -> int | None:
    """The documented context window of ``model`` in tokens, or None when it is not known by name."""
    name = model.rsplit("/", 1)[-1].lower()
    for pattern, window in _WINDOWS:
        if pattern.search(name):
            return window
    return None
