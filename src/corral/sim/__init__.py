"""An OpenAI-compatible chat-completions server that answers from the prompt, for tests and benchmarks.

It serves ``POST /v1/chat/completions`` in tools, json_schema and json_object modes (and plain
text), with answers that validate against the requested schema and are read from the prompt where
the text allows ("My name is John and I am 20 years old" → ``{"name": "John", "age": 20}``).
Latency, invalid and malformed answers are drawn reproducibly from a seed; a ``script`` can dictate
any reply. ``GET /v1/models``, ``GET /sim/stats`` and ``POST /sim/reset`` complete the surface.

    async with Simulator(SimConfig(latency_ms=200)) as sim:
        client = openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test")
        ...
        assert sim.stats.peak_concurrency <= 16
"""

from corral.sim.config import LogEntry, ScriptCall, SimConfig, SimReply, SimStats
from corral.sim.core import Script
from corral.sim.protocol import SimMode
from corral.sim.server import Simulator, SimulatorThread, run, serve

__all__ = [
    "LogEntry",
    "Script",
    "ScriptCall",
    "SimConfig",
    "SimMode",
    "SimReply",
    "SimStats",
    "Simulator",
    "SimulatorThread",
    "run",
    "serve",
]
