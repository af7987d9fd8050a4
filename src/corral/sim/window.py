"""Context windows: a request that does not fit its model's window is refused, never cut short.

A model reads its prompt and writes its answer in one window of tokens. Providers check at admission
that the prompt and the most the answer may take fit, and refuse with a 400 otherwise, each in its
own words:

    OpenAI (and vLLM, DeepSeek: the same sentence)    code ``context_length_exceeded``, param ``messages``
      with max_tokens       "This model's maximum context length is N tokens. However, you requested
                            T tokens (P in the messages, C in the completion). Please reduce the
                            length of the messages or completion."
      without               "This model's maximum context length is N tokens. However, your messages
                            resulted in P tokens. Please reduce the length of the messages."
    Anthropic                                          ``invalid_request_error``
      the prompt alone      "prompt is too long: P tokens > N maximum"
      with max_tokens       "input length and `max_tokens` exceed context limit: P + C > N, decrease
                            input length or `max_tokens` and try again"

Without ``max_tokens`` (OpenAI only: Anthropic requires it) the answer must still have room for one
token, as vLLM checks: a prompt of exactly N tokens is refused. The tokens are those the TPM limit
charges (:attr:`SimRequest.prompt_tokens`, the request's ``max_tokens``), so the two never disagree.
"""

from __future__ import annotations

from corral.sim.anthropic import messages_error_body
from corral.sim.openai import SimRequest, error_body

__all__ = ["model_entry", "window_refusal"]


def window_refusal(request: SimRequest, window: int) -> bytes | None:
    """The 400 body refusing ``request`` in its wire's words, or None when it fits ``window``."""
    prompt, completion = request.prompt_tokens, request.max_tokens
    if request.wire == "anthropic":
        if prompt > window:
            return messages_error_body(400, f"prompt is too long: {prompt} tokens > {window} maximum")
        if completion is not None and prompt + completion > window:
            return messages_error_body(
                400,
                f"input length and `max_tokens` exceed context limit: {prompt} + {completion} > {window}, "
                "decrease input length or `max_tokens` and try again",
            )
        return None
    head = f"This model's maximum context length is {window} tokens. However, "
    if completion is None:
        if prompt < window:  # room for at least one token of answer
            return None
        message = (
            f"{head}your messages resulted in {prompt} tokens. Please reduce the length of the messages."
        )
    else:
        if prompt + completion <= window:
            return None
        message = (
            f"{head}you requested {prompt + completion} tokens ({prompt} in the messages, {completion} in "
            "the completion). Please reduce the length of the messages or completion."
        )
    return error_body(400, message, param="messages", code="context_length_exceeded")


def model_entry(model: str, window: int | None) -> dict[str, object]:
    """A ``GET /v1/models`` entry; with a window, vLLM's ``max_model_len`` says how large it is."""
    entry: dict[str, object] = {
        "id": model,
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "corral-sim",
    }
    if window is not None:
        entry["max_model_len"] = window
    return entry
