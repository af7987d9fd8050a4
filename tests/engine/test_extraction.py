"""The strategies, re-asking and failure handling, over real HTTP against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from corral import AuthError, Extractor, InputError, Item, ModelNotFound, Outcome
from corral.engine._strategies import Order, Strategy
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator
from tests._support import ARTICLE_TEXTS, Person

TEXTS = [f"My name is Name{chr(65 + n % 26)}{n} and I am {20 + n} years old" for n in range(40)]


@contextlib.asynccontextmanager
async def extractor(sim: Simulator, schema: Any = Person, **options: Any) -> AsyncIterator[Extractor[Any]]:
    # The strategies themselves, against a server without limits: no slow start in the way.
    options.setdefault("adaptive", False)
    ex: Extractor[Any] = Extractor(schema, base_url=sim.url, model="sim-1", **options)
    async with ex:
        yield ex


async def collect(ex: Extractor[Any], texts: list[str], **options: Any) -> list[Outcome[Any]]:
    return [o async for o in ex.map(texts, **options)]


CASES: list[tuple[Strategy, int | None, Order]] = [
    ("sequential", None, "input"),
    ("gather", None, "input"),
    ("gather", 2, "input"),
    ("gather", 5, "input"),
    ("as_completed", None, "completion"),
    ("as_completed", 2, "completion"),
    ("as_completed", 5, "completion"),
    ("as_completed", 3, "input"),
]


@pytest.mark.parametrize(("strategy", "bound", "order"), CASES)
async def test_strategy_order_and_concurrency_bound(
    strategy: Strategy, bound: int | None, order: Order
) -> None:
    async with Simulator(SimConfig(latency_ms=15, latency_dist="lognormal", seed=7)) as sim:
        async with extractor(sim) as ex:
            outcomes = await collect(ex, TEXTS, strategy=strategy, concurrency=bound, order=order)
        peak = sim.stats.peak_concurrency
    ids = [o.id for o in outcomes]
    assert sorted(ids, key=int) == [str(n) for n in range(1, len(TEXTS) + 1)]  # each item exactly once
    if order == "input" or strategy != "as_completed":
        assert ids == sorted(ids, key=int)
    assert all(o.ok for o in outcomes)
    assert [o.unwrap().age for o in sorted(outcomes, key=lambda o: int(o.id))] == [20 + n for n in range(40)]
    expected_peak = 1 if strategy == "sequential" else (bound or len(TEXTS))
    assert peak <= expected_peak
    assert peak >= min(expected_peak, 2)  # concurrency really happened where allowed


async def test_as_completed_yields_before_the_slowest_finishes() -> None:
    # The first text is held back by the script: as_completed must deliver the others first.
    def slow_first(call: ScriptCall) -> SimReply | None:
        return SimReply(latency_ms=300) if "NameA0" in call.user_text else None

    config = SimConfig(latency_ms=5, latency_dist="fixed")
    async with Simulator(config, script=slow_first) as sim, extractor(sim) as ex:
        completion = await collect(ex, TEXTS[:6], strategy="as_completed", concurrency=None)
        by_input = await collect(ex, TEXTS[:6], strategy="as_completed", concurrency=None, order="input")
    assert completion[-1].id == "1"
    assert [o.id for o in by_input] == ["1", "2", "3", "4", "5", "6"]


async def test_reask_after_invalid_then_valid() -> None:
    def invalid_first(call: ScriptCall) -> SimReply | None:
        return SimReply(answer_text='{"name": "John", "age": "twenty"}') if call.repeat == 0 else None

    async with Simulator(script=invalid_first) as sim:
        async with extractor(sim, mode="tools") as ex:
            outcome = await ex.extract(ARTICLE_TEXTS[0])
        second = sim.log[-1]
    assert outcome.ok, outcome.error
    assert outcome.value == Person(name="John", age=20)
    assert outcome.attempts == 2
    assert outcome.usage.prompt_tokens > 0 and outcome.usage.completion_tokens > 0
    assert len(sim.log) == 2
    assert second.status == 200


async def test_reask_sends_the_validation_errors_back() -> None:
    seen: list[dict[str, Any]] = []

    def capture(call: ScriptCall) -> SimReply | None:
        seen.append(call.body)
        return SimReply(answer_text='{"name": "John"}') if call.repeat == 0 else None

    for mode in ("tools", "json_schema", "json_object"):
        seen.clear()
        async with Simulator(script=capture) as sim, extractor(sim, mode=mode) as ex:
            outcome = await ex.extract(ARTICLE_TEXTS[0])
        assert outcome.ok and outcome.attempts == 2
        followup = seen[1]["messages"]
        assert followup[-2]["role"] == "assistant"
        feedback = followup[-1]
        assert feedback["role"] == ("tool" if mode == "tools" else "user")
        assert "age: Field required" in feedback["content"]


async def test_reask_budget_is_bounded_and_every_attempt_counted() -> None:
    async with Simulator(script=lambda call: SimReply(answer_text="not json at all")) as sim:
        async with extractor(sim, max_retries=3) as ex:
            outcome = await ex.extract(ARTICLE_TEXTS[0])
        requests = len(sim.log)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.kind == "invalid_output"
    assert "after 4 attempts" in outcome.error.message
    assert outcome.attempts == 4 == requests
    assert outcome.usage.completion_tokens >= 4


async def test_reply_cut_off_by_max_tokens_is_reasked_with_more_room() -> None:
    budgets: list[int] = []

    def record(call: ScriptCall) -> SimReply | None:
        budgets.append(int(call.body["max_tokens"]))
        return None

    async with Simulator(script=record) as sim, extractor(sim, max_tokens=3) as ex:
        outcome = await ex.extract(ARTICLE_TEXTS[0])
    assert outcome.ok, outcome.error
    assert budgets[0] == 3 and budgets[1] > budgets[0]


async def test_invalid_answers_from_the_simulator_are_recovered() -> None:
    config = SimConfig(invalid_rate=0.3, malformed_rate=0.1, seed=3)
    async with Simulator(config) as sim:
        async with extractor(sim, max_retries=4) as ex:
            outcomes = await collect(ex, TEXTS)
        requests = len(sim.log)
    assert all(o.ok for o in outcomes)
    assert requests > len(TEXTS)  # some really were re-asked
    assert sum(o.attempts for o in outcomes) == requests


async def test_one_bad_item_never_fails_the_batch() -> None:
    def reject_third(call: ScriptCall) -> SimReply | None:
        if "NameC2" in call.user_text:
            return SimReply(
                status=400, error_body={"error": {"message": "context too long", "type": "invalid"}}
            )
        return None

    async with Simulator(script=reject_third) as sim, extractor(sim) as ex:
        outcomes = await collect(ex, TEXTS[:6], order="input")
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    error = outcomes[2].error
    assert error is not None and error.kind == "bad_request" and "context too long" in error.message


async def test_rejected_key_stops_the_run_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_KEY", "sk-wrong-secret")
    refuse = SimReply(
        status=401, error_body={"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}
    )
    async with Simulator(script=lambda call: refuse) as sim, extractor(sim, api_key_env="SIM_KEY") as ex:
        with pytest.raises(AuthError) as caught:
            await collect(ex, TEXTS)
    assert "$SIM_KEY" in str(caught.value)
    assert "sk-wrong-secret" not in str(caught.value)


async def test_unknown_model_stops_the_run() -> None:
    missing = SimReply(
        status=404, error_body={"error": {"message": "no such model", "code": "model_not_found"}}
    )
    async with Simulator(script=lambda call: missing) as sim, extractor(sim) as ex:
        with pytest.raises(ModelNotFound, match="sim-1"):
            await collect(ex, TEXTS)


@pytest.mark.parametrize("mode", ["tools", "json_schema", "json_object"])
async def test_every_wire_mode_extracts_the_article(mode: str) -> None:
    async with Simulator() as sim, extractor(sim, mode=mode) as ex:
        outcomes = await collect(ex, ARTICLE_TEXTS, order="input")
    assert [o.unwrap().name for o in outcomes] == ["John", "Mary", "Bob", "Alice", "Jane", "Joe", "Jill"]


class Pet(BaseModel):
    name: str
    species: str | None = None


class Owner(BaseModel):
    name: str
    age: int
    pets: list[Pet] = []


async def test_many_entities_nested_and_optional() -> None:
    async with Simulator() as sim, extractor(sim, schema=list[Person]) as ex:
        outcome = await ex.extract("John is 20 years old and Mary is 31.")
    assert outcome.ok, outcome.error
    assert {(p.name, p.age) for p in outcome.unwrap()} == {("John", 20), ("Mary", 31)}
    async with Simulator() as sim, extractor(sim, schema=Owner) as ex:
        nested = await ex.extract("My name is Ann and I am 40 years old; my cat is called Tom.")
    assert nested.ok and isinstance(nested.value, Owner)


async def test_model_name_is_asked_of_the_server_when_omitted() -> None:
    async with Simulator() as sim, Extractor[Person](Person, base_url=sim.url) as ex:
        assert ex.backend.model == "sim-1"
        assert (await ex.extract(ARTICLE_TEXTS[1])).value == Person(name="Mary", age=21)


async def test_memory_window_stays_bounded_while_streaming() -> None:
    pulled = 0
    outstanding_peak = 0
    yielded = 0

    def source() -> Iterator[Item]:
        nonlocal pulled, outstanding_peak
        for n in range(3000):
            pulled += 1
            outstanding_peak = max(outstanding_peak, pulled - yielded)
            yield Item(id=str(n), text=TEXTS[n % len(TEXTS)])

    async with Simulator() as sim, extractor(sim, concurrency=8) as ex:
        for order in ("completion", "input"):
            pulled = yielded = outstanding_peak = 0
            async for _ in ex.map(source(), order=order):
                yielded += 1
            window = (8 + 4) * (16 if order == "input" else 2)  # k + max(4, k/8) workers for concurrency k
            assert yielded == 3000
            assert outstanding_peak <= window + 1


async def test_breaking_out_cancels_in_flight_requests() -> None:
    async with Simulator(SimConfig(latency_ms=200, latency_dist="fixed")) as sim:
        async with extractor(sim, concurrency=4) as ex:
            async with contextlib.aclosing(ex.map(TEXTS)) as stream:
                async for _ in stream:
                    break
            # aclose returned: the producer and every request it started are gone, not left behind.
            assert [t for t in asyncio.all_tasks() if t.get_name() == "corral-producer"] == []
        assert len(sim.log) <= 4 * 2  # nothing past the first window was ever sent


async def test_fenced_json_in_content_is_unwrapped() -> None:
    fenced = SimReply(answer_text='```json\n{"name": "John", "age": 20}\n```')
    async with Simulator(script=lambda call: fenced) as sim, extractor(sim, mode="json_object") as ex:
        outcome = await ex.extract(ARTICLE_TEXTS[0])
    assert outcome.unwrap() == Person(name="John", age=20)
    assert outcome.attempts == 1


async def test_input_that_breaks_midway_keeps_every_earlier_result() -> None:
    def source() -> Iterator[Item]:
        for n in range(10):
            yield Item(id=str(n), text=TEXTS[n])
        raise InputError("unreadable CSV row", path="in.csv", line=12)

    received: list[str] = []

    async def consume(ex: Extractor[Any]) -> None:
        async for outcome in ex.map(source()):
            received.append(outcome.id)

    async with Simulator(SimConfig(latency_ms=5)) as sim, extractor(sim, concurrency=3) as ex:
        with pytest.raises(InputError, match=r"in\.csv:12: unreadable CSV row"):
            await consume(ex)
    assert sorted(received, key=int) == [str(n) for n in range(10)]


async def test_async_iterable_input() -> None:
    async def source() -> AsyncIterator[Item]:
        for n in range(12):
            await asyncio.sleep(0)
            yield Item(id=f"a{n}", text=TEXTS[n])

    async with Simulator() as sim, extractor(sim, concurrency=4) as ex:
        outcomes = [o async for o in ex.map(source(), order="input")]
    assert [o.id for o in outcomes] == [f"a{n}" for n in range(12)]
