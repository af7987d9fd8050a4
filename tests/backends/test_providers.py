"""A provider sent elsewhere keeps what makes it that provider: ``--model openai/NAME --base-url URL``
and ``$OPENAI_BASE_URL`` (a proxy, a gateway, a regional endpoint) keep OpenAI's profile (strict
schemas, the model traits), its prices and its model naming, while every request goes to the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import Extractor
from corral.backends import open_backend
from corral.backends.base import Mode, Request
from corral.backends.openai import OpenAIBackend
from corral.errors import ConfigError
from corral.schema import load_spec
from corral.sim import SimConfig, Simulator
from tests._support import PERSON, ROOT, Person
from tests._support.cli import Corral

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
            cost = ex.stats.cost
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


# --- issue 15, L11: a key never goes over plain http to another machine unless asked -------------

REMOTE_HTTP = "http://192.0.2.7:8000/v1"  # TEST-NET-1: never anyone's server


@pytest.mark.parametrize(
    ("model", "env", "base_url"),
    [
        ("sim-1", "OPENAI_API_KEY", REMOTE_HTTP),
        ("openai/gpt-4o-mini", "OPENAI_API_KEY", REMOTE_HTTP),
        ("vllm/qwen", "VLLM_API_KEY", "http://gpu-box.internal:8000/v1"),
        ("anthropic/claude-haiku-4-5", "ANTHROPIC_API_KEY", "http://[2001:db8::1]:8080"),
    ],
)
def test_a_key_is_not_sent_over_plain_http_to_another_machine(
    monkeypatch: pytest.MonkeyPatch, model: str, env: str, base_url: str
) -> None:
    monkeypatch.setenv(env, "sk-test-only-0123456789")
    with pytest.raises(ConfigError, match="--allow-plain-http") as refused:
        open_backend(model, base_url=base_url)
    message = str(refused.value)
    assert "https://" in message and env in message, "it says why and how: https, or the flag"
    assert "sk-test-only" not in message
    # Asked for explicitly (a trusted network), it is built; nothing is sent until a request.
    assert open_backend(model, base_url=base_url, allow_plain_http=True).endpoint.startswith("http://")


def test_the_variable_a_providers_sdk_reads_is_held_to_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-0123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", REMOTE_HTTP)
    with pytest.raises(ConfigError, match="unencrypted"):
        open_backend("openai/gpt-4o-mini")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-only-0123456789")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://proxy.example:8080")
    with pytest.raises(ConfigError, match="unencrypted"):
        open_backend("anthropic/claude-haiku-4-5")


def test_a_password_in_a_plain_http_base_url_is_held_to_the_same_rule() -> None:
    with pytest.raises(ConfigError, match="user and password") as refused:
        open_backend("sim-1", base_url="http://someone:hunter2-secret@192.0.2.7/v1")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:9/v1", "http://127.8.9.10:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1",
     "http://[::ffff:127.0.0.1]:9/v1"],
)  # fmt: skip
def test_loopback_http_keeps_its_key(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    # The simulator, a vLLM started with --api-key on this machine: nothing crosses a network.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-0123456789")
    backend = open_backend("sim-1", base_url=base_url)
    assert isinstance(backend, OpenAIBackend) and backend.base_url == base_url


def test_plain_http_without_a_key_stays_open() -> None:
    # A llama.cpp or vLLM server on the LAN that takes no key: there is nothing to read.
    assert open_backend("qwen", base_url=REMOTE_HTTP).endpoint == REMOTE_HTTP
    assert open_backend("ollama/llama3.2", base_url="http://gpu-box.internal:11434/v1").model == "llama3.2"


def test_a_lookalike_of_localhost_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-0123456789")
    for host in ("localhost.attacker.example", "127.0.0.1.nip.io", "[::ffff:192.0.2.7]", "0x7f.1"):
        with pytest.raises(ConfigError, match="unencrypted"):
            open_backend("sim-1", base_url=f"http://{host}/v1")


@pytest.mark.parametrize(
    "command",
    [
        ["run", "examples/people.txt", "--schema", PERSON],
        ["batch", "submit", "examples/people.txt", "--schema", PERSON, "-o", "never.jsonl"],
        ["bench"],
    ],
)
@pytest.mark.usefixtures("no_api_keys")
def test_the_commands_refuse_a_key_bound_for_plain_http_elsewhere_before_sending(
    corral: Corral, command: list[str], tmp_path: Path
) -> None:
    key = "sk-test-only-must-stay-home-0123"
    result = corral(*command, "--base-url", REMOTE_HTTP, "--model", "m",
                    env={"OPENAI_API_KEY": key, "CORRAL_STORE": str(tmp_path / "store.db")})  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "unencrypted" in result.stderr and "--allow-plain-http" in result.stderr
    assert "https://" in result.stderr
    assert key not in result.stderr + result.stdout
    assert not (ROOT / "never.jsonl").exists()


@pytest.mark.parametrize(
    "command", [["run"], ["batch", "submit"], ["batch", "collect"], ["serve"], ["bench"]]
)
@pytest.mark.usefixtures("no_api_keys")
def test_every_command_that_sends_to_a_base_url_takes_allow_plain_http(
    corral: Corral, command: list[str]
) -> None:
    result = corral(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--allow-plain-http" in result.stdout
