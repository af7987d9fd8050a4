from __future__ import annotations

import bpe_openai
import pytest

from corral import Extractor
from corral.backends.base import Mode, Request
from corral.engine._tokens import TokenEstimator
from corral.schema import load_spec
from corral.sim import SimConfig, Simulator
from tests._support import ARTICLE_TEXTS, Person


def request(text: str) -> Request:
    messages = [{"role": "system", "content": "Extract."}, {"role": "user", "content": text}]
    return Request(messages=messages, spec=load_spec(Person), mode=Mode.TOOLS, max_tokens=100)


def test_openai_models_are_counted_with_openai_tables() -> None:
    estimator = TokenEstimator("openai", "gpt-4o-mini")
    assert estimator.exact
    encode = bpe_openai.build_encoding_from_name("o200k_base").encode_ordinary
    text = "My name is John and I am 20 years old"
    expected = (
        len(encode(load_spec(Person).schema_json)) + len(encode("Extract.")) + len(encode(text)) + 2 * 4
    )
    assert estimator.units(request(text)) == expected


def test_other_backends_estimate_from_characters_and_learn_from_usage() -> None:
    estimator = TokenEstimator(None)
    assert not estimator.exact
    units = estimator.units(request("abc"))
    assert units == len(load_spec(Person).schema_json) + len("Extract.") + 3
    first = estimator.prompt_tokens(units)
    for _ in range(30):
        estimator.observe(units, prompt_tokens=units // 4)  # the provider says: 4 characters a token
    assert estimator.prompt_tokens(units) == pytest.approx(units / 4 * 1.05, rel=0.01)
    assert estimator.prompt_tokens(units) < first


async def test_tokens_per_minute_are_paced() -> None:
    tpm = 240_000  # 4,000 tokens a second; each request here is charged ~100 + max_tokens 100
    async with Simulator(SimConfig(tpm=tpm)) as sim:
        extractor: Extractor[Person] = Extractor(
            Person, base_url=sim.url, model="sim-1", tpm=tpm, max_tokens=100
        )
        async with extractor:
            outcomes = [o async for o in extractor.map(ARTICLE_TEXTS * 6)]
    assert all(o.ok for o in outcomes)
    log = sorted(sim.log, key=lambda entry: entry.time)
    per_second = tpm / 60
    biggest = max(entry.tokens for entry in log)
    for i, start in enumerate(log):
        charged = 0
        for entry in log[i:]:
            charged += entry.tokens
            # The pace starts empty and earns its one-second burst only by idling.
            assert charged <= per_second * (entry.time - start.time) + per_second + biggest
