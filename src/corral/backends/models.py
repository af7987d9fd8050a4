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

__all__ = ["DEFAULT", "REASONING", "ModelTraits", "traits_for"]


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """The request fields a model takes."""

    #: the body field that bounds the reply's tokens: "max_tokens" or "max_completion_tokens"
    max_tokens_field: str = "max_tokens"
    #: takes a ``temperature`` other than its default (False: none is sent, the default applies)
    temperature: bool = True
    #: takes ``reasoning_effort`` (how long a reasoning model thinks before it answers)
    reasoning_effort: bool = False


#: what most OpenAI-compatible servers take: max_tokens and a temperature
DEFAULT = ModelTraits()
#: OpenAI's reasoning models: the output bound in max_completion_tokens, and no temperature
REASONING = ModelTraits(max_tokens_field="max_completion_tokens", temperature=False, reasoning_effort=True)

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
