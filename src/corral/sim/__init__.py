"""An OpenAI-compatible chat-completions server that answers from the prompt, for tests and benchmarks.

It serves ``POST /v1/chat/completions`` in tools, json_schema and json_object modes (and plain
text), with answers that validate against the requested schema and are read from the prompt where
the text allows ("My name is John and I am 20 years old" → ``{"name": "John", "age": 20}``).
Latency, invalid and malformed answers and the faults of a real provider (5xx, connections dropped
mid-body, hangs, slow trickles, HTML instead of JSON) are drawn reproducibly from a seed; OpenAI's
requests- and tokens-per-minute limits are enforced with 429s and ``x-ratelimit-*`` headers; a
``script`` can dictate any reply. ``GET /v1/models``, ``GET /sim/stats`` and ``POST /sim/reset``
complete the surface.

The same model speaks Anthropic's Messages API (``POST /v1/messages``: forced tool use, 529
overloads, ``anthropic-ratelimit-*`` headers; ``sim.anthropic_url`` is its base URL), and both
providers' batch APIs: OpenAI's ``/v1/files`` + ``/v1/batches`` and Anthropic's
``/v1/messages/batches``, with their statuses on an accelerated clock (``batch_seconds``), results in
shuffled order, and lines that error (the seeded faults) or expire (``batch_expire_rate``).

    async with Simulator(SimConfig(latency_ms=200, rpm=600, reset_rate=0.01)) as sim:
        client = openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test")
        ...
        assert sim.stats.peak_concurrency <= 16
        assert sim.stats.by_fault.get("reset", 0) > 0
        assert sim.overdraft(rpm=500) == (0, 0)  # the client kept under 500/min, bursts included

From the socket to the answer:

    server           aiohttp's low-level server, and the ways to run it (Simulator, SimulatorThread)
    openai           the Chat Completions wire: read a request, write a reply
    anthropic        the Messages wire, onto the same parsed request
    core             the simulated model, free of HTTP: one request in, one reply and a delay out
    limits           OpenAI's rate limits enforced: requests and tokens per minute as buckets
    answers          JSON Schema → a deterministic answer built from the prompt (nodes: its pieces;
                     text: what it "reads" in a prompt)
    faults           wrong answers on purpose: schema-invalid JSON, text that is not JSON
    batches          provider batches on an accelerated clock (batch_openai, batch_anthropic: their
                     endpoints)
    config           its configuration, the scripting hook's types, and what it observed
    args             the ``corral sim`` options, beside what they configure
"""

from corral.sim.config import LogEntry, ScriptCall, SimConfig, SimFault, SimReply, SimStats
from corral.sim.core import Script
from corral.sim.limits import Overdraft
from corral.sim.openai import SimMode
from corral.sim.server import Simulator, SimulatorThread, run, serve

__all__ = [
    "LogEntry",
    "Overdraft",
    "Script",
    "ScriptCall",
    "SimConfig",
    "SimFault",
    "SimMode",
    "SimReply",
    "SimStats",
    "Simulator",
    "SimulatorThread",
    "run",
    "serve",
]
