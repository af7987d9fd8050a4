"""The public API: an :class:`Extractor` binds a response model to a backend, then extracts.

    async with Extractor(Person) as ex:                     # embedded local model
        one = await ex.extract("My name is John and I am 20 years old")
        async for outcome in ex.map(texts, concurrency=8):   # bounded, streaming
            ...

:func:`run` is the one synchronous wrapper, for scripts.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import hashlib
import math
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import orjson

from corral.backends import Backend, Mode, Request, open_backend, resolve_model
from corral.backends.models import ModelTraits
from corral.cost import Budget, Price, price_for, unpriced
from corral.engine._confidence import Recalibration, path_parts
from corral.engine._extract import DEFAULT_INSTRUCTION, Check, ExtractSettings, extract_item
from corral.engine._limits import EndpointLimits, Slots
from corral.engine._scheduler import RetryPolicy, Scheduler
from corral.engine._stats import RunStats
from corral.engine._strategies import Order, Process, Strategy, run_strategy
from corral.errors import ConfigError, OutputInvalid
from corral.io.items import as_items
from corral.schema import ResponseSpec, load_spec
from corral.store._cache import ResponseCache
from corral.types import Item, Outcome, Usage

__all__ = ["Around", "Extractor", "run"]

T = TypeVar("T")
#: wraps one item's extraction: ``around(item, extract)`` returns the item's outcome
Around = Callable[[Item, Process], Awaitable[Outcome[Any]]]


class _Default(enum.Enum):
    """Marks "not given" where ``None`` already means something (unbounded concurrency)."""

    CONCURRENCY = enum.auto()


class Extractor(Generic[T]):
    """Extract ``schema`` instances from texts with one model. Use as an async context manager.

    ``schema``: a pydantic model class, ``list[Model]`` for every entity in a text, a JSON Schema
    mapping, or a string (``file.py:Class``, ``package.module:Class``, ``schema.json``).
    ``model``: ``None``/``"local"`` (embedded), ``"openai/NAME"``, ``"ollama/NAME"``, …; with
    ``base_url``, the name sent to that OpenAI-compatible server (asked of the server when omitted).
    ``mode``: how the schema goes on the wire; default: the backend profile's preferred mode.
    ``rpm`` / ``tpm``: the provider's requests / tokens per minute; left out, they are learned from
    its rate-limit headers, or (``adaptive``) found from its 429s. ``retries``: per item, for 429s,
    5xx, timeouts and dropped connections (re-asks for invalid output are ``max_retries``).
    ``limits``: an :class:`~corral.engine._limits.EndpointLimits` shared with other extractors sending to the
    same endpoint (then ``rpm``, ``tpm`` and ``adaptive`` are its, not given here); ``backend``: one
    already open, which the extractor uses but does not close. ``allow_plain_http``: let a key go
    over ``http://`` to a host that is not loopback (refused otherwise). ``context_window``: the
    model's window in tokens, when neither the server nor corral's data knows it (an Ollama model run
    with a larger ``num_ctx``); a text that cannot fit ends as a ``too_long`` error, never cut.
    ``check(item, output)``: doubts about a valid answer (sentences for the model); an answer with
    any is re-asked with them, within ``max_retries``, and kept after the last. ``confidence``: ask
    for token log-probabilities, for each value's confidence (``Outcome.confidence``) where the reply
    is message content; None: where the provider is known to give them (OpenAI), True: ask any
    server (one that refuses the field stops the run), False: never. ``samples``: where no
    log-probabilities come, ask each item this many times in all (the further ones at temperature 1)
    and give each value the share of the answers that agree with it (confidence by agreement; it
    costs ``samples`` times the requests). ``calibration``: a map from confidences to how often
    they were right on labelled data (a :class:`~corral.engine._confidence.Recalibration`, or the
    JSON file ``corral eval --fit-calibration`` writes), applied to every confidence of its method.
    """

    def __init__(
        self,
        schema: type[T] | str | Path | Mapping[str, Any],
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        mode: Mode | str | None = None,
        prompt: str | None = None,
        max_retries: int = 2,
        max_tokens: int = 1024,
        temperature: float | None = 0.0,
        reasoning_effort: str | None = None,
        concurrency: int = 16,
        timeout: float = 120.0,
        many: bool = False,
        rpm: float | None = None,
        tpm: float | None = None,
        adaptive: bool = True,
        retries: int = 6,
        backend: Backend | None = None,
        cache: ResponseCache | None = None,
        prices: Mapping[str, Price] | None = None,
        budget: Budget | None = None,
        limits: EndpointLimits | None = None,
        allow_plain_http: bool = False,
        context_window: int | None = None,
        check: Check | None = None,
        confidence: bool | None = None,
        samples: int = 1,
        calibration: str | Path | Recalibration | None = None,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        self.spec: ResponseSpec[T] = load_spec(schema, many=many)
        self.backend: Backend = backend or open_backend(
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            allow_plain_http=allow_plain_http,
        )
        self.concurrency = concurrency
        self.scheduler = Scheduler(
            self.backend,
            rpm=rpm,
            tpm=tpm,
            adaptive=adaptive,
            policy=RetryPolicy(max_retries=retries),
            cache=cache,
            budget=budget,
            limits=limits,
        )
        self._stats = RunStats()
        self._escalation: tuple[Extractor[Any], float] | None = None
        self._prices = prices
        # Shared limits with a bound on requests in flight hold it for every extractor using them.
        self._shared_slots = limits.slots if limits is not None else None
        self._slots = self._shared_slots or Slots(self._bound(concurrency))
        self._owns_backend = backend is None
        self.settings = ExtractSettings(
            spec=self.spec,
            mode=self._pick_mode(mode),
            modes=self.backend.profile.modes,
            forced=mode is not None,
            instruction=prompt or DEFAULT_INSTRUCTION,
            max_retries=max_retries,
            max_tokens=max_tokens,
            temperature=temperature,
            reasoning_effort=reasoning_effort,
            check=check,
            logprobs=self.backend.profile.logprobs if confidence is None else confidence,
            samples=samples,
            recalibration=_recalibration(calibration),
        )
        if not 1 <= samples <= 20:
            raise ConfigError(f"samples must be from 1 to 20, got {samples}")
        if context_window is not None and context_window < 256:
            raise ConfigError(f"context_window must be at least 256 tokens, got {context_window}")
        self._context_window = context_window

    @property
    def stats(self) -> RunStats:
        """The counters of its runs that bring none of their own (see :meth:`map`): requests,
        retries, rate limits, cache hits, cost, in flight."""
        return self._stats

    @property
    def price(self) -> Price | None:
        """What an answer of the model costs; None while unknown (before ``async with``, or unpriced)."""
        return self.scheduler.price

    @property
    def prices(self) -> Mapping[str, Price] | None:
        """The price table it was given (the model's own price is :attr:`price`)."""
        return self._prices

    @property
    def budget(self) -> Budget | None:
        """The spending cap its requests are held to, if any."""
        return self.scheduler.budget

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache its requests look in first, if any."""
        return self.scheduler.cache

    @property
    def limits(self) -> EndpointLimits:
        """The endpoint's pace (RPM/TPM, learned or given) its requests keep."""
        return self.scheduler.limits

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What must not change between runs of one durable job (their results would not belong
        together): the model, the schema (by hash), the prompt, the mode and ``many``."""
        spec = self.spec
        schema_hash = hashlib.sha256(spec.schema_json.encode()).hexdigest()[:12]
        return {
            "model": f"{self.backend.profile.name}/{self.backend.model}",
            "schema": f"{spec.name} #{schema_hash}",
            "prompt": self.settings.instruction,
            "mode": self.settings.mode.value,
            "many": spec.many,
        }

    @property
    def context_window(self) -> int | None:
        """The most tokens a request may hold, prompt and reply: as given, else what the backend knows
        (a server's report, the embedded model's ``n_ctx``, the provider's documented window)."""
        return self._context_window or self.backend.context_window

    def token_count(self, text: str) -> int:
        """Tokens ``text`` adds to a request by a measure that never moves: the provider's tokenizer
        where corral has it, else a conservative count of characters; not the ratio the engine
        learns from usage, so the same text always counts the same (and is cut at the same places)."""
        return math.ceil(self.scheduler.text_tokens(text, fixed=True))

    def text_room(self) -> int | None:
        """Tokens of text a request may carry within the context window, once the instructions, the
        schema and the reply's room (``max_tokens``) are counted (by :meth:`token_count`'s measure);
        None when the window is not known."""
        window = self.context_window
        if window is None:
            return None
        settings = self.settings
        mode = settings.ladder.current
        bare = Request(
            messages=[settings.system_for(mode), {"role": "user", "content": ""}],
            spec=self.spec,
            mode=mode,
            max_tokens=settings.max_tokens,
        )
        return math.floor(window - self.scheduler.prompt_estimate(bare, fixed=True) - settings.max_tokens)

    def escalate_to(self, stronger: Extractor[Any], *, below: float) -> None:
        """Ask ``stronger`` (an entered extractor of the same schema) again for every item with a
        value less sure than ``below``; its answers replace those values, and the record keeps the
        first answer (``Outcome.escalation``)."""
        if not 0.0 < below <= 1.0:
            raise ConfigError(f"the escalation line must be over 0 and at most 1, not {below}")
        self._escalation = (stronger, below)

    @property
    def check(self) -> Check | None:
        """Doubts about valid answers, re-asked (see the class's doc)."""
        return self.settings.check

    @check.setter
    def check(self, check: Check | None) -> None:
        self.settings.check = check

    @property
    def in_flight_limit(self) -> int | None:
        """Requests in flight at most (the extractor's, or the shared limits' bound); None: no bound."""
        return self._slots.limit

    def _pick_mode(self, mode: Mode | str | None) -> Mode:
        profile = self.backend.profile
        if mode is None:
            return profile.default_mode
        try:
            chosen = Mode(mode)
        except ValueError:
            raise ConfigError(
                f"unknown mode {mode!r}: choose one of {', '.join(m.value for m in Mode)}"
            ) from None
        if chosen not in profile.modes:
            supported = ", ".join(m.value for m in profile.modes)
            raise ConfigError(
                f"the {profile.name} backend does not support mode {chosen.value!r}: use {supported}"
            )
        return chosen

    async def __aenter__(self) -> Self:
        await resolve_model(self.backend)
        self.scheduler.context_window = self.context_window  # known now the server was asked
        try:
            self._check_reasoning_effort()
        except ConfigError:
            await self.aclose()
            raise
        # Priced once the model is known (a --base-url server may have just named it).
        self.scheduler.price = price_for(self.backend.model, self.backend.profile, self._prices)
        if self.scheduler.budget is not None and self.scheduler.price is None:
            await self.aclose()
            raise unpriced(self.backend.model)
        return self

    def _check_reasoning_effort(self) -> None:
        effort = self.settings.reasoning_effort
        traits = getattr(self.backend, "traits", None)
        if effort is not None and not (isinstance(traits, ModelTraits) and traits.reasoning_effort):
            raise ConfigError(
                f"--reasoning-effort {effort}: model {self.backend.model!r} does not reason; it is for "
                "OpenAI's reasoning models (o1, o3, o4-mini, the gpt-5 family)"
            )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_backend:  # a backend passed in is the caller's to close (others may share it)
            await self.backend.aclose()

    async def extract(self, text: str | Item) -> Outcome[T]:
        """Extract from one text. The outcome holds the value or the error; it never raises for it."""
        item = text if isinstance(text, Item) else Item(id="1", text=text)
        return await extract_item(self.scheduler, self.settings, item, self._slots, self._stats)

    def map(
        self,
        texts: Iterable[str | Item] | AsyncIterable[Item],
        *,
        strategy: Strategy = "as_completed",
        concurrency: int | _Default | None = _Default.CONCURRENCY,
        order: Order = "completion",
        around: Around | None = None,
        stats: RunStats | None = None,
    ) -> AsyncGenerator[Outcome[T], None]:
        """Extract from many texts, yielding one outcome per text (see :mod:`corral.engine._strategies`).

        ``concurrency``: at most this many requests at once (default: the extractor's); ``None``
        starts every item at once, like the article's plain ``gather``/``as_completed``.
        ``around(item, extract)``: wraps each item's extraction (the run store uses it to answer
        finished items from an earlier run and to record new ones). ``stats``: the counters this run's
        requests are counted into (default: the extractor's own, :attr:`stats`).
        """
        items = texts if isinstance(texts, AsyncIterable) else as_items(texts)
        limit = self._bound(self.concurrency if isinstance(concurrency, _Default) else concurrency)
        slots = self._shared_slots or Slots(limit)  # requests in flight; this run's own bound
        counted = self._stats if stats is None else stats

        # Plain functions returning the coroutine: a wrapping coroutine frame per item is measurable.
        def extract(item: Item) -> Awaitable[Outcome[Any]]:
            return extract_item(self.scheduler, self.settings, item, slots, counted)

        if self._escalation is not None:
            stronger, below = self._escalation
            first_pass = extract

            def extract(item: Item) -> Awaitable[Outcome[Any]]:
                return escalated(first_pass(item), item, stronger, below, counted)

        process: Process = extract
        if around is not None:
            wrap = around

            def process(item: Item) -> Awaitable[Outcome[Any]]:
                return wrap(item, extract)

        # A few more items in progress than requests in flight: an item waiting out a backoff holds its
        # place in the run but not its slot, which a spare item uses meanwhile. An eighth is enough for
        # that; twice as many made every completion wake a waiting worker, +25% CPU at 1,000 in flight.
        workers = None if limit is None else (1 if strategy == "sequential" else limit + max(4, limit // 8))
        return run_strategy(items, process, strategy=strategy, concurrency=workers, order=order)

    def _bound(self, limit: int | None) -> int | None:
        ceiling = self.backend.profile.max_concurrency
        if ceiling is None:
            return limit
        return ceiling if limit is None else min(limit, ceiling)

    async def gather(
        self, texts: Iterable[str | Item] | AsyncIterable[Item], *, concurrency: int | None = None
    ) -> list[Outcome[T]]:
        """All outcomes at the end, in input order."""
        return [o async for o in self.map(texts, strategy="gather", concurrency=concurrency)]


def _recalibration(calibration: str | Path | Recalibration | None) -> Recalibration | None:
    """A map given, or read from its JSON file (``corral eval --fit-calibration`` writes one)."""
    if calibration is None or isinstance(calibration, Recalibration):
        return calibration
    try:
        return Recalibration.from_json(orjson.loads(Path(calibration).read_bytes()))
    except OSError as exc:
        raise ConfigError(f"cannot read the calibration map {calibration}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"{calibration}: {exc} (write one with corral eval --fit-calibration)") from None


async def escalated(
    first: Awaitable[Outcome[Any]], item: Item, stronger: Extractor[Any], below: float, stats: RunStats
) -> Outcome[Any]:
    """``first``'s outcome, or, when a value of it is less sure than ``below``, the same item asked of
    ``stronger`` too: its values replace the doubtful ones, the first answer is kept beside them."""
    outcome = await first
    doubtful = sorted(path for path, p in (outcome.confidence or {}).items() if p < below)
    if not outcome.ok or not doubtful:
        return outcome
    second = await extract_item(stronger.scheduler, stronger.settings, item, stronger._slots, stats)
    if not second.ok:
        # The stronger model failed (or its answer waits in a batch): the first answer stands,
        # still marked as doubtful by its confidence.
        return outcome
    merged = replace_values(outcome.output, second.output, doubtful)
    try:
        value = stronger.spec.parse(orjson.dumps({"items": merged} if stronger.spec.many else merged))
    except OutputInvalid:  # the answers do not combine (a list of another length): the second whole
        merged, value = second.output, second.value
    confidence = dict(outcome.confidence or {})
    for path in doubtful:
        if second.confidence is not None and path in second.confidence:
            confidence[path] = second.confidence[path]
        else:
            confidence.pop(path, None)
    usage = Usage(outcome.usage.prompt_tokens, outcome.usage.completion_tokens)
    usage.add(second.usage)
    return dataclasses.replace(
        outcome,
        value=value,
        output=merged,
        attempts=outcome.attempts + second.attempts,
        usage=usage,
        latency=outcome.latency + second.latency,
        cost=outcome.cost + second.cost,
        confidence=confidence,
        escalation={
            "model": stronger.backend.model,
            "paths": doubtful,
            "first": outcome.output,
            "first_confidence": outcome.confidence,
        },
    )


def replace_values(first: Any, second: Any, paths: Sequence[str]) -> Any:
    """``first`` with the value at each of ``paths`` taken from ``second`` (where ``second`` has one)."""
    result = copy.deepcopy(first)
    for path in paths:
        parts = path_parts(path)
        source: Any = second
        try:
            for part in parts:
                source = source[part]
        except (KeyError, IndexError, TypeError):
            continue
        target: Any = result
        try:
            for part in parts[:-1]:
                target = target[part]
            target[parts[-1]] = source
        except (KeyError, IndexError, TypeError):
            continue
    return result


def run(texts: Iterable[str | Item], schema: Any, **options: Any) -> list[Outcome[Any]]:
    """Synchronous: extract ``schema`` from every text; the outcomes come back in input order.

    Takes the :class:`Extractor` options, plus ``strategy`` and ``order`` for :meth:`Extractor.map`
    (``order`` defaults to ``"input"`` here).
    """
    strategy: Strategy = options.pop("strategy", "as_completed")
    order: Order = options.pop("order", "input")

    async def main() -> list[Outcome[Any]]:
        async with Extractor[Any](schema, **options) as extractor:
            return [o async for o in extractor.map(texts, strategy=strategy, order=order)]

    return asyncio.run(main())
