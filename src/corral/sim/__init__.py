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

Each model has a context window (``context_window``, 128,000 tokens by default, as gpt-4o-mini): a
request whose prompt and ``max_tokens`` do not fit is refused with the provider's own 400, online and
in batch lines, and ``GET /v1/models`` reports the window as vLLM does (``max_model_len``). A long
text gets one entity per person it names, each read from their own stretch of it; ``hallucinate``
and ``misplace`` make a share of the answers' free strings wrong the two ways grounding must catch
(invented, or miscopied past an exact search), by seed; ``field_errors`` makes a share of each named
field's values wrong yet schema-valid (an age a few years off, another name of the text), the
mistakes an evaluation against gold must count. A request with ``logprobs: true`` gets OpenAI's
``choices[0].logprobs`` for its message content, drawn so that the values the simulator made wrong
are less likely than the right ones (informative, roughly calibrated, not perfect); a tool call gets
none, reasoning models and Anthropic's API refuse the parameter as they do. Few-shot prompts without
a schema of corral's kind (langextract's "Q:"/"A:" examples) are answered in their own format from
the last question.

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
    window           context windows: the 400s of a request that does not fit
    answers          JSON Schema → a deterministic answer built from the prompt (nodes: its pieces;
                     text: what it "reads" in a prompt; hashing: the draws it makes from a text)
    fewshot          few-shot prompts (langextract's) answered as their examples show
    slips            hallucinated and misplaced values, by seed (field_errors: a field's wrong values)
    logprobs         token logprobs for an answer's text, from what the simulator got wrong
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
