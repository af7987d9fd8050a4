"""langextract's few-shot requests, answered in its format from the last question only.

langextract is not imported (CI does not install it): the requests are built by hand in the shape
langextract 1.7.1 sends, copied from its source:

- the prompt: ``langextract/prompting.py``, ``QAPromptGenerator.render``: the description and a blank
  line, the additional context if any, "Examples", then "Q: {text}" / "A: {answer}" and a blank line
  per example, then "Q: {chunk}" and "A: ", joined by newlines;
- each example's answer: ``langextract/core/format_handler.py``, ``format_extraction_example``:
  ``{"extractions": [{"<class>": "<text>", "<class>_attributes": {...}}]}`` as ``json.dumps(indent=2)``,
  in ```json fences when fences are on;
- the body: ``langextract/providers/openai.py``, ``_build_chat_completions_params``: the system message
  "You are a helpful assistant that responds in JSON format.", ``n: 1`` and ``response_format``
  ``json_object``; or, with ``use_schema_constraints``, the ``json_schema`` of
  ``langextract/providers/schemas/openai.py`` (``OpenAISchema.from_examples``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import jsonschema
import pytest

from corral.sim import SimConfig, Simulator
from tests._support.chat import JSON, post
from tests.sim._people import document
from tests.sim.test_documents import found

DESCRIPTION = "Extract every person named in the text, with their age."
EXAMPLES: list[tuple[str, list[tuple[str, str, dict[str, Any]]]]] = [
    (
        "Ana Silva, 41, runs a bakery in Porto with her brother Rui.",
        [("person", "Ana Silva", {"age": "41"}), ("person", "Rui", {})],
    ),
    ("Dr. Tomas Weber (aged 63) retired last spring.", [("person", "Tomas Weber", {"age": "63"})]),
]
QUESTION = "Maria Lopez is 34 years old and works in Lisbon. Jonas Berg, 52, is a pilot; so is Kim."


def example_answer(extractions: list[tuple[str, str, dict[str, Any]]], *, fence: bool = False) -> str:
    items = [{cls: text, f"{cls}_attributes": attributes} for cls, text, attributes in extractions]
    formatted = json.dumps({"extractions": items}, indent=2, ensure_ascii=False)
    return f"```json\n{formatted.strip()}\n```" if fence else formatted


def langextract_prompt(
    question: str,
    examples: list[tuple[str, list[tuple[str, str, dict[str, Any]]]]] = EXAMPLES,
    *,
    context: str | None = None,
    fence: bool = False,
) -> str:
    lines = [f"{DESCRIPTION}\n"]
    if context:
        lines.append(f"{context}\n")
    if examples:
        lines.append("Examples")
        for text, extractions in examples:
            lines += [f"Q: {text}", f"A: {example_answer(extractions, fence=fence)}\n"]
    lines += [f"Q: {question}", "A: "]
    return "\n".join(lines)


def example_schema(attributes: dict[str, list[str]]) -> JSON:
    """``OpenAISchema.from_examples`` for one class, ``person``, with these attributes' types."""
    attribute_props = {name: {"anyOf": [*({"type": t} for t in types), {"type": "null"}]}
                       for name, types in attributes.items()}  # fmt: skip
    variant = {
        "type": "object",
        "properties": {
            "person": {"type": "string"},
            "person_attributes": {
                "anyOf": [
                    {"type": "object", "properties": attribute_props, "required": list(attribute_props),
                     "additionalProperties": False},
                    {"type": "null"},
                ]
            },
        },
        "required": ["person", "person_attributes"],
        "additionalProperties": False,
    }  # fmt: skip
    return {
        "type": "object",
        "properties": {"extractions": {"type": "array", "items": {"anyOf": [variant]}}},
        "required": ["extractions"],
        "additionalProperties": False,
    }


def langextract_body(prompt: str, schema: JSON | None = None) -> JSON:
    response_format: JSON = {"type": "json_object"}
    if schema is not None:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "langextract_extractions", "schema": schema, "strict": True},
        }
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that responds in JSON format."},
            {"role": "user", "content": prompt},
        ],
        "n": 1,
        "response_format": response_format,
    }


async def ask(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> str:
    status, reply = await post(http, sim, body)
    assert status == 200, reply
    return str(reply["choices"][0]["message"]["content"])


def extractions(content: str) -> list[tuple[str, str, Any]]:
    """What langextract's resolver reads from a reply: (class, text, attributes) per extraction."""
    fenced = re.fullmatch(r"```json\n(.*)\n```", content, re.DOTALL)
    value = json.loads(fenced.group(1) if fenced else content)
    out = []
    for item in value["extractions"]:
        cls = next(key for key in item if not key.endswith("_attributes"))
        out.append((cls, item[cls], item.get(f"{cls}_attributes")))
    return out


async def test_a_json_object_request_is_answered_from_the_question_alone(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    content = await ask(http, sim, langextract_body(langextract_prompt(QUESTION)))
    assert extractions(content) == [
        ("person", "Maria Lopez", {"age": "34"}),
        ("person", "Jonas Berg", {"age": "52"}),
        ("person", "Kim", {}),
    ]
    assert not {"Ana", "Silva", "Rui", "Tomas", "Weber", "Examples"} & set(re.findall(r"\w+", content))
    assert content.startswith('{\n  "extractions": [\n'), "laid out as the examples are"


async def test_a_json_schema_request_gets_an_answer_its_schema_accepts(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    examples = [*EXAMPLES, ("Lena, a nurse, is 29.", [("person", "Lena", {"age": 29, "role": "nurse"})])]
    schema = example_schema({"age": ["integer", "string"], "role": ["string"]})
    question = "Maria Lopez is 34 years old. Jonas Berg, 52, is a pilot and his role is captain; so is Kim."
    prompt = langextract_prompt(question, examples)
    content = await ask(http, sim, langextract_body(prompt, schema))
    jsonschema.validate(json.loads(content), schema)
    assert extractions(content) == [
        ("person", "Maria Lopez", {"age": 34, "role": None}),
        ("person", "Jonas Berg", {"age": 52, "role": "captain"}),
        ("person", "Kim", {"age": None, "role": None}),
    ]


async def test_the_examples_types_fences_and_class_are_followed(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    examples = [("Ana Silva, 41, runs a bakery.", [("patient", "Ana Silva", {"age": 41})])]
    content = await ask(http, sim, langextract_body(langextract_prompt(QUESTION, examples, fence=True)))
    assert content.startswith("```json\n") and content.endswith("\n```")
    assert extractions(content)[:2] == [
        ("patient", "Maria Lopez", {"age": 34}),
        ("patient", "Jonas Berg", {"age": 52}),
    ]
    no_people = [("Take 2 aspirin daily.", [("medication", "aspirin", {"dose": "2"})])]
    content = await ask(http, sim, langextract_body(langextract_prompt(QUESTION, no_people)))
    assert extractions(content) == [], "a model asked for medications lists no people"


async def test_the_previous_chunk_given_as_context_is_not_read(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    context = "[Previous text]: ...and that was when Carla Mendes, 47, left the firm."
    content = await ask(http, sim, langextract_body(langextract_prompt(QUESTION, context=context)))
    assert "Carla" not in content and [text for _, text, _ in extractions(content)][:2] == [
        "Maria Lopez",
        "Jonas Berg",
    ]


async def test_a_long_chunk_gets_every_person_once(sim: Simulator, http: aiohttp.ClientSession) -> None:
    text, figures = document(40)
    content = await ask(http, sim, langextract_body(langextract_prompt(text)))
    expected = [("person", f.name, {} if f.age is None else {"age": str(f.age)}) for f in figures]
    assert extractions(content) == expected


async def test_slips_apply_to_the_extractions_with_the_same_shares(http: aiohttp.ClientSession) -> None:
    texts = [document(40, seed=n)[0] for n in range(5)]
    config = SimConfig(seed=3, hallucinate=0.2, misplace=0.3)
    ways: dict[str, int] = {}
    async with Simulator(config) as sim:
        for text in texts:
            for _, name, _ in extractions(await ask(http, sim, langextract_body(langextract_prompt(text)))):
                way = found(name, text)
                ways[way] = ways.get(way, 0) + 1
        # langextract sends no temperature: OpenAI's default, 1, samples; at 0 the answer is one.
        greedy = {**langextract_body(langextract_prompt(texts[0])), "temperature": 0}
        again = await ask(http, sim, greedy)
    assert sum(ways.values()) == 200
    assert abs(ways.get("absent", 0) / 200 - 0.2) < 0.08, ways
    assert abs((ways.get("normalised", 0) + ways.get("fuzzy", 0)) / 200 - 0.3) < 0.08, ways
    async with Simulator(config) as other:
        assert await ask(http, other, greedy) == again


async def test_the_anthropic_wire_answers_the_same_prompt_the_same_way(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 1024,
            "system": "You are a helpful assistant that responds in JSON format.",
            "messages": [{"role": "user", "content": langextract_prompt(QUESTION)}]}  # fmt: skip
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
    async with http.post(f"{sim.anthropic_url}/v1/messages", json=body, headers=headers) as response:
        reply = await response.json()
    assert extractions(reply["content"][0]["text"]) == extractions(
        await ask(http, sim, langextract_body(langextract_prompt(QUESTION)))
    )


@pytest.mark.parametrize(
    "prompt",
    [
        "Extract the people.\n\nQ: Maria Lopez is 34.\nA: ",  # no examples and no schema: no classes
        langextract_prompt(QUESTION).replace('{\n  "extractions"', "extractions:\n- person", 1),  # not JSON
        langextract_prompt(QUESTION) + "and more",  # not the model's turn
    ],
)
async def test_other_prompts_are_answered_as_before(
    sim: Simulator, http: aiohttp.ClientSession, prompt: str
) -> None:
    content = await ask(http, sim, langextract_body(prompt))
    assert "extractions" not in json.loads(content), "not a few-shot answer"
