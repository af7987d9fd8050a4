"""One item, start to end: prompt → request → validate → re-ask with the errors → Outcome.

Validation failures are re-asked here, with their own budget (``max_retries``). Transport failures
(429, 5xx, timeouts) are not: they belong to the scheduler, so a rate-limit error can never leak into
a re-ask prompt. A provider error that dooms every item (bad key, unknown model) propagates and stops
the run; any other ends this item with a recorded error. A request the backend defers (a line of a
provider batch) ends the item *deferred*: it has no end in this run, and a later one finds its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.backends.base import Completion, Deferred, Message, Mode, Request
from corral.backends.models import TOO_LONG_FIX
from corral.engine._confidence import Recalibration, value_confidence, value_leaves
from corral.engine._limits import Slots
from corral.engine._scheduler import Scheduler, Tally
from corral.engine._stats import RunStats
from corral.errors import InputTooLong, ModeRefused, OutputInvalid, ProviderError
from corral.schema import ResponseSpec
from corral.types import ErrorInfo, Item, Outcome, Usage

__all__ = ["DEFAULT_INSTRUCTION", "Check", "ExtractSettings", "ModeLadder", "extract_item"]

#: doubts about an item's valid answer (as JSON-able data), each a sentence for the model; none: fine
Check = Callable[[Item, Any], Sequence[str]]

_log = logging.getLogger("corral")

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


class ModeLadder:
    """The structured-output mode in use, and the next one when a server refuses it.

    Shared by every item of an extractor: the first refusal moves them all on, once (items that were
    in flight in the refused mode find the ladder already moved). A mode the caller chose is never
    changed: a refusal of it ends the run with the reason."""

    def __init__(self, modes: tuple[Mode, ...], start: Mode, *, forced: bool) -> None:
        self._modes = modes
        self.current = start
        self.forced = forced
        self.refused: set[Mode] = set()

    def start_at(self, mode: Mode) -> None:
        """Begin in ``mode`` (one the server was seen to take before), unless the caller chose one."""
        if not self.forced and mode in self._modes and mode not in self.refused:
            self.current = mode

    def refuse(self, mode: Mode, exc: ProviderError) -> Mode:
        """The server refused ``mode``: the mode to ask in now. Raises ``exc``, made fatal, when the
        caller chose the mode or every mode the backend offers has been refused."""
        if self.forced:
            exc.fatal = True
            raise exc
        self.refused.add(mode)
        if self.current not in self.refused:
            return self.current  # another item moved on already
        following = [m for m in self._modes if m not in self.refused]
        if not following:
            exc.fatal = True
            raise exc
        self.current = following[0]
        _log.warning("corral: the server refuses mode %s (%s); using %s from now on", mode, exc, self.current)
        return self.current


@dataclass(slots=True)
class ExtractSettings:
    """How to ask. Built once per run; the system messages are rendered here, not per item.

    ``mode`` is the mode asked for first (part of a job's identity); ``ladder`` is the one in use,
    which moves on along ``modes`` when a server refuses one, unless ``forced``."""

    spec: ResponseSpec[Any]
    mode: Mode
    instruction: str = DEFAULT_INSTRUCTION
    max_retries: int = 2
    max_tokens: int = 1024
    temperature: float | None = 0.0
    reasoning_effort: str | None = None
    #: every mode the backend offers, preferred first (empty: ``mode`` alone)
    modes: tuple[Mode, ...] = ()
    #: the caller chose ``mode``: it is never changed
    forced: bool = False
    #: doubts about a valid answer (``check(item, output)``: values the text does not hold, say); an
    #: answer with any is re-asked with them, within ``max_retries``, and kept after the last re-ask
    check: Check | None = None
    #: ask for token log-probabilities (in modes whose reply is message content), for each value's
    #: confidence
    logprobs: bool = False
    #: answers asked for in all (1: the answer alone): the further ones, at temperature 1, say how
    #: often the model gives each value again (confidence by agreement, where no log-probabilities are)
    samples: int = 1
    #: confidences mapped to how often they were right on labelled data (per method)
    recalibration: Recalibration | None = None
    ladder: ModeLadder = field(init=False)
    _systems: dict[Mode, Message] = field(init=False)

    def __post_init__(self) -> None:
        self.ladder = ModeLadder(self.modes or (self.mode,), self.mode, forced=self.forced)
        self._systems = {}

    @property
    def system(self) -> Message:
        """The system message of the mode asked for first."""
        return self.system_for(self.mode)

    def system_for(self, mode: Mode) -> Message:
        message = self._systems.get(mode)
        if message is None:
            text = self.instruction
            if mode is Mode.JSON_OBJECT:
                # json_object constrains the reply to *some* JSON; the schema must be in the prompt.
                text = f"{text}\n\n{_SCHEMA_NOTE}{self.spec.schema_json}"
            message = self._systems[mode] = {"role": "system", "content": text}
        return message


async def extract_item(
    scheduler: Scheduler, settings: ExtractSettings, item: Item, slots: Slots, stats: RunStats
) -> Outcome[Any]:
    """Extract one item. Never raises for the item's own failure; raises only fatal provider errors.

    ``attempts`` in the outcome counts every request sent for the item: re-asks and retries alike.
    ``stats``: the run's counters, which the scheduler counts its requests into.
    """
    if item.problem is not None:
        return Outcome(id=item.id, input=item.text, error=ErrorInfo("input", item.problem))
    mode = settings.ladder.current
    messages = _opening(settings, mode, item)
    usage = Usage()
    tally = Tally(stats)
    max_tokens = settings.max_tokens
    started = time.perf_counter()
    too_long = scheduler.over_window(
        Request(messages=messages, spec=settings.spec, mode=mode, max_tokens=max_tokens)
    )
    if too_long is not None:
        message = too_long + TOO_LONG_FIX
        return _failed(item, InputTooLong.kind, message, tally=tally, usage=usage, started=started)
    problem = ""
    attempt = 0
    while attempt <= settings.max_retries:
        request = Request(
            messages=messages,
            spec=settings.spec,
            mode=mode,
            max_tokens=max_tokens,
            temperature=settings.temperature,
            reasoning_effort=settings.reasoning_effort,
            item_id=item.id,
            logprobs=settings.logprobs and mode in _CONTENT_MODES,
        )
        try:
            completion = await scheduler.complete(request, slots, tally)
        except ModeRefused as exc:
            # Not this item's fault, nor a re-ask: start it again in the mode the ladder moves to.
            try:
                mode = settings.ladder.refuse(mode, exc)
            except ModeRefused:
                scheduler.stop(exc)  # no mode left (or the caller's own): nothing more is sent
                raise
            messages = _opening(settings, mode, item)
            attempt, max_tokens = 0, settings.max_tokens
            continue
        except ProviderError as exc:
            if exc.fatal:
                raise
            message = f"{exc} (gave up after {tally.requests} requests)" if tally.requests > 1 else str(exc)
            return _failed(item, exc.kind, message, tally=tally, usage=usage, started=started)
        if isinstance(completion, Deferred):
            return Outcome(id=item.id, input=item.text, pending="deferred")
        attempt += 1
        usage.add(completion.usage)
        if completion.finish_reason == "length":
            problem = f"reply cut off at max_tokens={max_tokens}"
            feedback = _TRUNCATED
            max_tokens = min(max_tokens * 2, settings.max_tokens * _MAX_TOKEN_GROWTH)
        else:
            verdict = await _judge(settings, item, completion.text, last=attempt > settings.max_retries)
            if isinstance(verdict, _Accepted):
                confidence, method = await _confidences(
                    scheduler, settings, completion, item=item, mode=mode, output=verdict.output,
                    slots=slots, tally=tally, usage=usage,
                )  # fmt: skip
                return Outcome(
                    id=item.id,
                    input=item.text,
                    value=verdict.value,
                    attempts=tally.requests,
                    usage=usage,
                    latency=time.perf_counter() - started,
                    output=verdict.output,
                    cost=tally.cost,
                    confidence=confidence,
                    confidence_method=method,
                )
            problem, feedback = verdict
        messages = [*messages, completion.reply, _feedback_message(completion, feedback)]
    message = f"no valid output after {settings.max_retries + 1} attempts; last problem: {problem}"
    return _failed(item, OutputInvalid.kind, message, tally=tally, usage=usage, started=started)


def _opening(settings: ExtractSettings, mode: Mode, item: Item) -> list[Message]:
    """The first messages of an item's conversation: the run's instruction (and the item's own note)
    as the system message, the text as the user's."""
    system = settings.system_for(mode)
    if item.note:
        system = {"role": "system", "content": f"{system['content']}\n\n{item.note}"}
    return [system, {"role": "user", "content": item.text}]


#: the modes whose reply is the message content (log-probabilities are given for it, not for a tool
#: call's arguments)
_CONTENT_MODES = frozenset({Mode.JSON_SCHEMA, Mode.JSON_OBJECT, Mode.GRAMMAR})


def _confidence(settings: ExtractSettings, completion: Completion) -> dict[str, float] | None:
    """Each value's confidence from the reply's token log-probabilities, by the output's paths."""
    if completion.token_logprobs is None:
        return None
    confidence = value_confidence(completion.text, completion.token_logprobs)
    if confidence is None or not settings.spec.many:
        return confidence
    # The wire wraps a list as {"items": [...]}; the output is the bare list.
    return {path.removeprefix("items"): p for path, p in confidence.items() if path.startswith("items[")}


async def _confidences(
    scheduler: Scheduler,
    settings: ExtractSettings,
    completion: Completion,
    *,
    item: Item,
    mode: Mode,
    output: Any,
    slots: Slots,
    tally: Tally,
    usage: Usage,
) -> tuple[dict[str, float] | None, str]:
    """Each value's confidence and how it was found: from the reply's log-probabilities, else (with
    ``samples``) from agreement among further samples; recalibrated when a map is given."""
    confidence, method = _confidence(settings, completion), "logprobs"
    if confidence is None and settings.samples > 1:
        method = "agreement"
        confidence = await _agreement(
            scheduler, settings, item=item, mode=mode, output=output, slots=slots, tally=tally, usage=usage
        )
    if confidence and settings.recalibration is not None:
        return _recalibrated(settings.recalibration, confidence, method)
    return confidence, method


def _recalibrated(
    recalibration: Recalibration, confidence: dict[str, float], method: str
) -> tuple[dict[str, float], str]:
    if method not in recalibration.points:
        return confidence, method
    mapped = {path: recalibration.apply(method, value) for path, value in confidence.items()}
    return mapped, f"{method} (recalibrated)"


async def _agreement(
    scheduler: Scheduler,
    settings: ExtractSettings,
    *,
    item: Item,
    mode: Mode,
    output: Any,
    slots: Slots,
    tally: Tally,
    usage: Usage,
) -> dict[str, float] | None:
    """Each value's confidence as the share of ``settings.samples`` answers that give it (the answer
    itself and further samples at temperature 1, each its own request); compared by path, so two
    answers listing the same people in another order disagree. A sample that fails, or does not
    validate, counts as disagreeing. None when no further sample could be asked (deferred)."""
    leaves = dict(value_leaves(output))
    if not leaves:
        return {}
    agree = dict.fromkeys(leaves, 1)
    for number in range(1, settings.samples):
        request = Request(
            messages=_opening(settings, mode, item),
            spec=settings.spec,
            mode=mode,
            max_tokens=settings.max_tokens,
            temperature=1.0,
            reasoning_effort=settings.reasoning_effort,
            item_id=item.id,
            sample=number,
        )
        try:
            completion = await scheduler.complete(request, slots, tally)
        except ProviderError as exc:
            if exc.fatal:
                raise
            continue
        if isinstance(completion, Deferred):
            return None
        usage.add(completion.usage)
        try:
            other = dict(value_leaves(settings.spec.dump(await _parsed(settings.spec, completion.text))))
        except OutputInvalid:
            continue
        for path, value in leaves.items():
            agree[path] += _same(other.get(path, _MISSING), value)
    return {path: round(count / settings.samples, 4) for path, count in agree.items()}


_MISSING = object()


def _same(one: Any, other: Any) -> bool:
    if isinstance(one, str) and isinstance(other, str):
        return " ".join(one.casefold().split()) == " ".join(other.casefold().split())
    return bool(one == other)


@dataclass(frozen=True, slots=True)
class _Accepted:
    value: Any
    output: Any


async def _judge(
    settings: ExtractSettings, item: Item, text: str, *, last: bool
) -> _Accepted | tuple[str, str]:
    """A reply accepted, or why not and what to tell the model. Doubts (``settings.check``) left
    after the last re-ask stay with the answer, for the caller to flag."""
    try:
        value = await _parsed(settings.spec, text)
    except OutputInvalid as exc:
        return str(exc), _correction(exc)
    output = settings.spec.dump(value)
    doubts = settings.check(item, output) if settings.check is not None else ()
    if not doubts or last:
        return _Accepted(value, output)
    return "; ".join(doubts), _doubted(doubts)


async def _parsed(spec: ResponseSpec[Any], text: str) -> Any:
    """The reply validated: in a worker thread when that may take a while (a JSON Schema's patterns
    can spend up to the validation budget), so the event loop, and a server on it, keeps answering."""
    if spec.offload:
        return await asyncio.to_thread(spec.parse, text)
    return spec.parse(text)


def _doubted(doubts: Sequence[str]) -> str:
    listed = "\n".join(f"- {doubt}" for doubt in doubts)
    return (
        f"Your reply is valid JSON, but:\n{listed}\nUse only what the text says, copied as it is written; "
        "leave out what it does not say. Reply again with corrected JSON only."
    )


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
