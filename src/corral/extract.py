"""One item, start to end: prompt → request → validate → re-ask with the errors → Outcome.

Validation failures are re-asked here, with their own budget (``max_retries``). Transport failures
(429, 5xx, timeouts) are not: they belong to the scheduler, so a rate-limit error can never leak into
a re-ask prompt. A provider error that dooms every item (bad key, unknown model) propagates and stops
the run; any other ends this item with a recorded error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from corral.backends.base import Completion, Message, Mode, Request
from corral.errors import OutputInvalid, ProviderError
from corral.limits import Slots
from corral.outcome import ErrorInfo, Item, Outcome, Usage
from corral.scheduler import Scheduler, Tally
from corral.schema import ResponseSpec

__all__ = ["DEFAULT_INSTRUCTION", "ExtractSettings", "extract_item"]

DEFAULT_INSTRUCTION = (
    "Extract the requested information from the user's text. Use only what the text states; "
    "leave optional fields empty when the text does not say."
)
_SCHEMA_NOTE = "Reply with one JSON object, and nothing else, that matches this JSON Schema:\n"
_TRUNCATED = (
    "Your reply was cut off at the token limit before the JSON was complete. "
    "Reply again with the complete JSON, as briefly as the schema allows."
)
#: a truncated reply is re-asked with twice the room, up to this multiple of the configured limit
_MAX_TOKEN_GROWTH = 4


@dataclass(frozen=True, slots=True)
class ExtractSettings:
    """How to ask. Built once per run; the system message is rendered here, not per item."""

    spec: ResponseSpec[Any]
    mode: Mode
    instruction: str = DEFAULT_INSTRUCTION
    max_retries: int = 2
    max_tokens: int = 1024
    temperature: float | None = 0.0
    system: Message = field(init=False)

    def __post_init__(self) -> None:
        text = self.instruction
        if self.mode is Mode.JSON_OBJECT:
            # json_object mode constrains the reply to *some* JSON; the schema must be in the prompt.
            text = f"{text}\n\n{_SCHEMA_NOTE}{self.spec.schema_json}"
        object.__setattr__(self, "system", {"role": "system", "content": text})


async def extract_item(
    scheduler: Scheduler, settings: ExtractSettings, item: Item, slots: Slots
) -> Outcome[Any]:
    """Extract one item. Never raises for the item's own failure; raises only fatal provider errors.

    ``attempts`` in the outcome counts every request sent for the item: re-asks and retries alike.
    """
    if item.problem is not None:
        return Outcome(id=item.id, input=item.text, error=ErrorInfo("input", item.problem))
    messages: list[Message] = [settings.system, {"role": "user", "content": item.text}]
    usage = Usage()
    tally = Tally()
    max_tokens = settings.max_tokens
    started = time.perf_counter()
    problem = ""
    for _ in range(settings.max_retries + 1):
        request = Request(
            messages=messages,
            spec=settings.spec,
            mode=settings.mode,
            max_tokens=max_tokens,
            temperature=settings.temperature,
            item_id=item.id,
        )
        try:
            completion = await scheduler.complete(request, slots, tally)
        except ProviderError as exc:
            if exc.fatal:
                raise
            message = f"{exc} (gave up after {tally.requests} requests)" if tally.requests > 1 else str(exc)
            return _failed(item, exc.kind, message, tally=tally, usage=usage, started=started)
        usage.add(completion.usage)
        if completion.finish_reason == "length":
            problem = f"reply cut off at max_tokens={max_tokens}"
            feedback = _TRUNCATED
            max_tokens = min(max_tokens * 2, settings.max_tokens * _MAX_TOKEN_GROWTH)
        else:
            try:
                value = settings.spec.parse(completion.text)
            except OutputInvalid as exc:
                problem = str(exc)
                feedback = _correction(exc)
            else:
                return Outcome(
                    id=item.id,
                    input=item.text,
                    value=value,
                    attempts=tally.requests,
                    usage=usage,
                    latency=time.perf_counter() - started,
                    output=settings.spec.dump(value),
                    cost=tally.cost,
                )
        messages = [*messages, completion.reply, _feedback_message(completion, feedback)]
    message = f"no valid output after {settings.max_retries + 1} attempts; last problem: {problem}"
    return _failed(item, OutputInvalid.kind, message, tally=tally, usage=usage, started=started)


def _correction(exc: OutputInvalid) -> str:
    listed = "\n".join(f"- {problem}" for problem in exc.problems)
    return f"Your reply did not match the schema:\n{listed}\nReply again with corrected JSON only."


def _feedback_message(completion: Completion, text: str) -> Message:
    # A tool call must be answered by a tool message carrying its id; otherwise the user speaks.
    if completion.tool_call_id is not None:
        return {"role": "tool", "tool_call_id": completion.tool_call_id, "content": text}
    return {"role": "user", "content": text}


def _failed(
    item: Item, kind: str, message: str, *, tally: Tally, usage: Usage, started: float
) -> Outcome[Any]:
    return Outcome(
        id=item.id,
        input=item.text,
        error=ErrorInfo(kind, message),
        attempts=tally.requests,
        usage=usage,
        latency=time.perf_counter() - started,
        cost=tally.cost,
    )
