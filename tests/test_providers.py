"""A provider sent elsewhere keeps what makes it that provider: ``--model openai/NAME --base-url URL``
and ``$OPENAI_BASE_URL`` (a proxy, a gateway, a regional endpoint) keep OpenAI's profile (strict
schemas, the model traits), its prices and its model naming, while every request goes to the URL."""

from __future__ import annotations

import pytest

from corral import Extractor
from corral.backends import open_backend
from corral.backends.base import Mode, Request
from corral.backends.openai import OpenAIBackend
from corral.bench import Person
from corral.errors import ConfigError
from corral.schema import load_spec
from corral.sim import SimConfig, Simulator

TEXTS = [f"My name is Person{k} and I am {20 + k} years old" for k in range(8)]


def test_a_base_url_keeps_the_openai_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only")
    backend = open_backend("openai/gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    assert isinstance(backend, OpenAIBackend)
    assert (backend.profile.name, backend.model, backend.base_url) == (
        "openai",
        "gpt-4o-mini",
        "http://127.0.0.1:9/v1",
    )
    body = backend.body(Request([{"role": "user", "content": "hi"}], load_spec(Person), Mode.TOOLS, 100))
    assert body["model"] == "gpt-4o-mini"
    assert body["tools"][0]["function"]["strict"] is True, "OpenAI's strict schemas stay"
    # The variable OpenAI's own SDK reads moves it the same way.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
    moved = open_backend("openai/gpt-4o-mini")
    assert isinstance(moved, OpenAIBackend)
    assert (moved.profile.name, moved.model, moved.base_url) == (
        "openai",
        "gpt-4o-mini",
        "http://127.0.0.1:8/v1",
    )


def test_a_gateway_may_go_without_the_providers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI itself refuses every request without one: that is still said before anything is sent.
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        open_backend("openai/gpt-4o-mini")
    gateway = open_backend("openai/gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    assert gateway.profile.name == "openai"


async def test_a_job_through_a_gateway_is_priced_and_names_the_model_as_openai_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only")
    async with Simulator(SimConfig(latency_ms=1)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.url)
        async with Extractor(Person, model="openai/gpt-4o-mini", adaptive=False) as ex:
            outcomes = [o async for o in ex.map(TEXTS)]
            cost = ex.scheduler.stats.cost
        models = {entry.model for entry in sim.log}
    assert all(o.ok for o in outcomes)
    assert models == {"gpt-4o-mini"}, "the name OpenAI knows, not openai/gpt-4o-mini"
    assert cost > 0, "OpenAI's price for the model applies: --max-cost and $ work"


def test_url_credentials_and_a_key_together_are_a_usage_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 15, L10: aiohttp refused the pair at request time with a ValueError, leaving a session open.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-0123456789")
    with pytest.raises(ConfigError, match="give one of them") as raised:
        open_backend("sim-1", base_url="http://someone:hunter2-secret@127.0.0.1:9/v1")
    assert "hunter2" not in str(raised.value)
    monkeypatch.delenv("OPENAI_API_KEY")
    assert open_backend("sim-1", base_url="http://someone:hunter2-secret@127.0.0.1:9/v1").model == "sim-1"
