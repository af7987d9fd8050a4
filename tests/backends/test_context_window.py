"""Context windows as data: what each backend knows of its model's window, what a server reports, and
a provider's refusal of an over-long request translated into :class:`~corral.errors.InputTooLong`
(never retried, never silently cut)."""

from __future__ import annotations

import pytest

from corral import Extractor
from corral.backends import open_backend, resolve_model
from corral.backends.anthropic import AnthropicBackend
from corral.backends.base import Mode, Request
from corral.backends.models import context_window_for
from corral.backends.openai import OpenAIBackend
from corral.errors import InputTooLong
from corral.schema import load_spec
from corral.sim import SimConfig, Simulator
from tests._support.article import Person

LONG = "My name is Ann and I am 30 years old. " * 400  # about 4,000 tokens


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o-mini", 128_000),
        ("openai/gpt-4o-2024-08-06", 128_000),
        ("gpt-4.1-mini", 1_047_576),
        ("gpt-5-mini", 400_000),
        ("o4-mini", 200_000),
        ("claude-haiku-4-5", 200_000),
        ("llama-3.1-8b-instruct", None),
    ],
)
def test_documented_windows_are_known_by_model_name(model: str, window: int | None) -> None:
    assert context_window_for(model) == window


def test_ollama_is_taken_at_its_default_num_ctx_which_it_would_cut_to_silently() -> None:
    assert open_backend("ollama/llama3.1").context_window == 2048
    assert open_backend("vllm/any-model").context_window is None


async def test_a_server_that_reports_its_window_is_believed() -> None:
    async with Simulator(SimConfig(context_window=4096)) as sim:
        backend = open_backend(None, base_url=sim.url)  # no model: asked of the server
        assert isinstance(backend, OpenAIBackend)
        try:
            await resolve_model(backend)
            assert backend.model and backend.context_window == 4096
        finally:
            await backend.aclose()
        # The user's word wins over the server's.
        async with Extractor(Person, base_url=sim.url, model="sim-1", context_window=3000) as ex:
            assert ex.context_window == 3000


async def test_an_over_long_request_refused_by_openai_is_input_too_long() -> None:
    spec = load_spec(Person)
    request = Request(
        messages=[{"role": "user", "content": LONG}], spec=spec, mode=Mode.TOOLS, max_tokens=512
    )
    async with Simulator(SimConfig(context_window=2048)) as sim:
        backend = open_backend("sim-1", base_url=sim.url)
        try:
            with pytest.raises(InputTooLong, match="maximum context length is 2048 tokens") as caught:
                await backend.complete(request)
        finally:
            await backend.aclose()
    assert "cut it into chunks" in str(caught.value) and caught.value.kind == "too_long"


@pytest.mark.parametrize("max_tokens", [512, 2040])
async def test_an_over_long_request_refused_by_anthropic_is_input_too_long(max_tokens: int) -> None:
    # 512: the prompt alone is over ("prompt is too long"); with a short prompt and 2040 of room for
    # the reply, the two together are ("input length and `max_tokens` exceed context limit").
    text = LONG if max_tokens == 512 else "My name is Ann and I am 30 years old. " * 10
    spec = load_spec(Person)
    request = Request(
        messages=[{"role": "user", "content": text}], spec=spec, mode=Mode.TOOLS, max_tokens=max_tokens
    )
    async with Simulator(SimConfig(context_window=2048)) as sim:
        backend = AnthropicBackend(model="claude-haiku-4-5", api_key="k", base_url=sim.anthropic_url)
        try:
            with pytest.raises(InputTooLong):
                await backend.complete(request)
        finally:
            await backend.aclose()


async def test_an_item_that_cannot_fit_is_never_sent() -> None:
    async with Simulator(SimConfig(context_window=100_000)) as sim:
        async with Extractor(Person, base_url=sim.url, model="sim-1", context_window=2048) as ex:
            outcome = await ex.extract(LONG)
            short = await ex.extract("My name is Ann and I am 30 years old.")
        assert sim.stats.requests == 1  # the short one only
    assert outcome.error is not None and outcome.error.kind == "too_long"
    assert "2,048-token context window" in outcome.error.message
    assert short.ok
