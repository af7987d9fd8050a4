"""Model traits as data: OpenAI's reasoning models are sent max_completion_tokens and no temperature
(the simulator refuses the rest in OpenAI's words), and a field a model refuses stops the run at once
instead of failing every item."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from corral import Extractor, UnsupportedParameter
from corral.backends import COMPATIBLE_PROFILE, OPENAI_PROFILE
from corral.backends.base import Mode, Request
from corral.backends.models import DEFAULT, REASONING, traits_for
from corral.backends.openai import OpenAIBackend
from corral.errors import ConfigError
from corral.schema import load_spec
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator, SimulatorThread
from corral.sim.openai import error_body
from tests._support import PERSON, Person
from tests._support.cli import Corral

TEXTS = [f"My name is Person{k} and I am {20 + k} years old" for k in range(12)]


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("gpt-5.1", True),
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("openai/gpt-5-nano", True),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("ollama-o1x", False),
        ("gpt-50-chat", False),
    ],
)
def test_reasoning_models_are_known_by_name(model: str, reasoning: bool) -> None:
    assert (traits_for(model, DEFAULT) == REASONING) is reasoning


def body_for(model: str, *, openai: bool) -> dict[str, object]:
    profile = OPENAI_PROFILE if openai else COMPATIBLE_PROFILE
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model=model, profile=profile)
    spec = load_spec(Person)
    request = Request([{"role": "user", "content": "hi"}], spec, Mode.TOOLS, max_tokens=300)
    return backend.body(request)


def test_each_model_is_sent_the_fields_it_takes() -> None:
    reasoning = body_for("gpt-5-mini", openai=True)
    assert reasoning["max_completion_tokens"] == 300
    assert "max_tokens" not in reasoning and "temperature" not in reasoning
    chat = body_for("gpt-4o-mini", openai=True)
    assert chat["max_completion_tokens"] == 300 and chat["temperature"] == 0.0
    assert "max_tokens" not in chat
    # Other OpenAI-compatible servers know max_tokens; a reasoning model behind a gateway does not.
    server = body_for("llama-3.1-8b", openai=False)
    assert server["max_tokens"] == 300 and server["temperature"] == 0.0
    gateway = body_for("openai/o3-mini", openai=False)
    assert gateway["max_completion_tokens"] == 300 and "temperature" not in gateway


async def test_a_gpt_5_mini_job_succeeds_where_max_tokens_and_temperature_would_be_refused() -> None:
    async with Simulator(SimConfig(latency_ms=1, model="gpt-5-mini")) as sim:
        # The simulator refuses both fields for this model, as OpenAI does: a success is the proof.
        async with Extractor(Person, base_url=sim.url, model="gpt-5-mini", adaptive=False) as ex:
            outcomes = [o async for o in ex.map(TEXTS)]
        assert [o.error for o in outcomes if not o.ok] == []
        assert sim.stats.by_status == {200: len(TEXTS)}
        async with Extractor(
            Person, base_url=sim.url, model="gpt-5-mini", adaptive=False, temperature=0.5
        ) as ex:
            one = await ex.extract(TEXTS[0])  # the traits drop the temperature: still fine
        assert one.ok
        # What corral sent before it knew the model: refused, in OpenAI's words.
        messages = [{"role": "user", "content": TEXTS[0]}]
        async with aiohttp.ClientSession() as session:
            for extra, code in (({"max_tokens": 300}, "unsupported_parameter"),
                                ({"temperature": 0.0}, "unsupported_value")):  # fmt: skip
                body = {"model": "gpt-5-mini", "messages": messages, **extra}
                async with session.post(f"{sim.url}/chat/completions", json=body) as response:
                    assert response.status == 400
                    assert (await response.json())["error"]["code"] == code


def refuse_everything(call: ScriptCall) -> SimReply:
    message = "Unsupported parameter: 'logprobs' is not supported with this model."
    return SimReply(
        status=400, error_body=error_body(400, message, param="logprobs", code="unsupported_parameter")
    )


async def test_a_field_the_model_refuses_stops_the_run_at_once_with_the_fix() -> None:
    async with Simulator(SimConfig(latency_ms=1), script=refuse_everything) as sim:
        async with Extractor(Person, base_url=sim.url, model="sim-1", concurrency=1, adaptive=False) as ex:
            with pytest.raises(UnsupportedParameter) as raised:
                _ = [o async for o in ex.map(TEXTS)]
        assert sim.stats.requests == 1, "one refusal is enough: every request carries the field"
    message = str(raised.value)
    assert "logprobs" in message and "every request" in message
    assert raised.value.fatal and raised.value.status == 400


def test_a_gpt_5_mini_batch_job_is_answered_not_refused_line_by_line(corral: Corral, tmp_path: Path) -> None:
    # The batch file's bodies come from the same builder: a refused field would fail every line
    # after the batch's whole wait.
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=3, batch_seconds=0.2, model="gpt-5-mini")) as sim:
        done = corral(
            "run",
            str(source),
            "--schema",
            PERSON,
            "--model",
            "gpt-5-mini",
            "--base-url",
            sim.url,
            "-o",
            str(out),
            "--batch",
            "--poll-every",
            "0.05",
        )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["error"] for row in rows] == [None] * len(TEXTS)


async def test_reasoning_effort_is_sent_to_models_that_reason_and_refused_for_others_before_sending() -> None:
    async with Simulator(SimConfig(latency_ms=1, model="gpt-5-mini")) as sim:
        async with Extractor(
            Person, base_url=sim.url, model="gpt-5-mini", adaptive=False, reasoning_effort="minimal"
        ) as ex:
            request = Request(
                [{"role": "user", "content": "hi"}], ex.spec, Mode.TOOLS, 100, reasoning_effort="low"
            )
            assert isinstance(ex.backend, OpenAIBackend)
            assert ex.backend.body(request)["reasoning_effort"] == "low"
            outcomes = [o async for o in ex.map(TEXTS[:3])]
        assert all(o.ok for o in outcomes)
        with pytest.raises(ConfigError, match="does not reason"):
            async with Extractor(Person, base_url=sim.url, model="gpt-4o-mini", reasoning_effort="low"):
                pass
        assert sim.stats.requests == 3, "the refused set-up sent nothing"
