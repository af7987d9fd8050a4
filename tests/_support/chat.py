"""OpenAI chat requests as corral sends them, for the tests that speak to the simulator directly."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from corral.sim import Simulator

__all__ = ["JSON", "TEXTS", "answer_of", "chat_body", "post"]

JSON = dict[str, Any]

#: a person, an employee with every detail, nobody, and nothing
TEXTS = [
    "My name is John and I am 20 years old",
    "Our new admin Jane Doe (jane@corp.com), 34 years old, was hired on 2021-03-04 and lives in Berlin.",
    "Nothing to see here.",
    "",
]


def chat_body(mode: str, schema: JSON, text: str, **extra: Any) -> JSON:
    """A request as corral (compact schema in the system prompt for json_object) would send it."""
    system = "Extract the data."
    body: JSON = {"model": "gpt-test", "temperature": 0, **extra}
    if mode == "tools":
        body["tools"] = [{"type": "function", "function": {"name": "extract", "parameters": schema}}]
        body["tool_choice"] = {"type": "function", "function": {"name": "extract"}}
    elif mode == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
        system += " Answer with JSON matching this schema: " + json.dumps(schema, separators=(",", ":"))
    body["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return body


def answer_of(reply: JSON) -> str:
    """The record in a chat completion: the forced tool call's arguments, or the message's content."""
    message = reply["choices"][0]["message"]
    if message.get("tool_calls"):
        return str(message["tool_calls"][0]["function"]["arguments"])
    return str(message["content"])


async def post(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> tuple[int, JSON]:
    """POST ``body`` to the simulator's chat completions: the status and the decoded JSON reply."""
    async with http.post(f"{sim.url}/chat/completions", json=body) as response:
        return response.status, await response.json()
