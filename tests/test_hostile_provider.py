"""A provider's answers are outside text (issue 15, M1 and M3): a key it echoes, or the credentials of
the base URL, never reach a record, a message or the store."""

from __future__ import annotations

import pytest

from corral import Extractor, ModelNotFound
from corral.bench import Person
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator

KEY = "sk-test-hostile-0123456789abcdef"


def echo_the_key(call: ScriptCall) -> SimReply:
    error = {
        "message": f"Incorrect request for key {KEY} (sent as Bearer {KEY})",
        "type": "invalid_request_error",
    }
    return SimReply(status=400, error_body={"error": error})


async def test_a_key_the_provider_echoes_is_scrubbed_from_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    async with (
        Simulator(SimConfig(latency_ms=1), script=echo_the_key) as sim,
        Extractor(Person, base_url=sim.url, model="sim-1", api_key_env="HOSTILE_KEY", adaptive=False) as ex,
    ):
        [outcome] = [o async for o in ex.map(["My name is John and I am 20 years old"])]
    assert outcome.error is not None
    record = str(outcome.to_record())
    assert KEY not in record and "***" in outcome.error.message


def model_not_found(call: ScriptCall) -> SimReply:
    error = {
        "message": "The model does not exist",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
    return SimReply(status=404, error_body={"error": error})


async def test_base_url_credentials_are_not_in_the_model_not_found_message() -> None:
    async with Simulator(SimConfig(latency_ms=1), script=model_not_found) as sim:
        url = sim.url.replace("http://", "http://someone:hunter2-secret@")
        async with Extractor(Person, base_url=url, model="nope", adaptive=False) as ex:
            with pytest.raises(ModelNotFound) as raised:
                _ = [o async for o in ex.map(["My name is John and I am 20 years old"])]
    assert "hunter2-secret" not in str(raised.value) and "someone" not in str(raised.value)
    assert "/v1" in str(raised.value)
