"""The embedded model (llama.cpp with a schema grammar, :mod:`._llama`) and the few-shot prompts
small local models need (:mod:`._fewshot`): the code only the local backend uses, together.
llama.cpp itself is imported when the backend opens, not here."""

from corral.backends.local._llama import DEFAULT_MODEL, LocalBackend

__all__ = ["DEFAULT_MODEL", "LocalBackend"]
