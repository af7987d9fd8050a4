"""Token logprobs for an answer's text, as OpenAI's Chat Completions return them, drawn to match the
simulator's own mistakes.

The wire (``choices[0].logprobs`` when a request sends ``logprobs: true``) is OpenAI's::

    {"content": [{"token": "{\\"", "logprob": -1.2e-05, "bytes": [123, 34], "top_logprobs": []},
                 {"token": "name", "logprob": 0.0, ...}, {"token": "\\":\\"", ...},
                 {"token": "John", "logprob": -0.0023, ...}, ...],
     "refusal": null}

one entry per token of the message content, ``top_logprobs`` holding the ``top_logprobs`` most likely
tokens at that position (``[]`` when the request asks none). This is what gpt-4o sends for a
json_schema answer: JSON punctuation runs with their quotes (``{"``, ``":"``, ``","``, ``"]``), keys
without them, string values in word pieces (``Science``, `` Fair``), numbers in runs of at most three
digits. Tokens are laid out the same way here: :func:`tokens` splits any text so that the tokens
concatenate to exactly that text, and the entries' ``bytes`` are each token's UTF-8 bytes.

How sure the model is of each value, drawn by seed, from what the simulator did to it (a
:class:`~corral.sim.nodes.Mark` per leaf, :meth:`corral.sim.answers.Filler.marks`). A value whose
field goes wrong with chance ``q`` (its field errors; for a free string, also hallucinated or
misplaced) gets a confidence ``c``, the joint probability of the tokens that spell it, from a
Beta distribution of mean ``1 - q`` and concentration ``KAPPA`` conditioned on the outcome:
``Beta(a + 1, b)`` when the value is right, ``Beta(a, b + 1)`` when the simulator made it wrong
(``a = (1 - q) * KAPPA``, ``b = q * KAPPA``). That is the posterior of a calibrated model whose
confidence has that prior, so among values given confidence ``c`` about a share ``c`` are right:
confidences are informative (wrong values mostly lower) but overlap, as a real model's do. With
``q = 0.3``: right values average 0.8, wrong ones 0.47. ``q`` is never below ``FLOOR``: a right
value with nothing configured is near certain, not certain.

``log c`` is spread over the value's tokens: 85 % on the first (where a model picks between
candidates), the rest evenly over the others, so the product of a value's token probabilities is
``c`` and their minimum close to it. Keys are forced by a strict schema's grammar (``0.0``, as gpt-4o
gives them under json_schema) and near certain otherwise; punctuation is near certain; text that is
not JSON (plain text mode, a fence) gets small, varied logprobs. A value that is not where the fill
put it (a script's answer, a broken one) counts as right with chance ``FLOOR``.

``top_logprobs``: the token answered first (the simulator answers each position's most likely
token, so nothing is above it), then plausible others with the rest of the probability in a
decreasing share: at a wrong value's first token, the right value's first token first; elsewhere a
neighbouring number, another spelling of the word, other punctuation.

Only asked-for work is done: nothing here runs for a request without ``logprobs``.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from corral.sim.nodes import Mark, Path

__all__ = ["FLOOR", "KAPPA", "content_logprobs", "tokens"]

JSON = dict[str, Any]
#: the least chance of being wrong a value is given
FLOOR = 0.01
#: the concentration of the confidence's Beta prior: lower spreads confidences more
KAPPA = 2.0
_FIRST_SHARE = 0.85
_LEAST = 1e-4  # no value is less likely than this: log(0) is no logprob
_FLOOR_LOGPROB = -40.0

# A string's content: words with the space before them, digits in threes, escapes, punctuation runs.
_PIECES = re.compile(
    r" ?[^\W\d_]{1,12}|[^\W\d_]{1,8}| ?\d{1,3}|\s+|\\u[0-9a-fA-F]{4}|\\.|[^\w\s\\]{1,3}|[\s\S]"
)
# What stands between values: punctuation with the quotes it touches, whitespace, any other text.
_GLUE = re.compile(r"[ \t]*\n[ \t]*| ?[^\W\d_]{1,12}|[{}\[\]:,\"]{1,4}| ?\d{1,3}|[ \t]+|[^\w\s]{1,3}|[\s\S]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = ("true", "false", "null")
_JSON_CHARS = frozenset('{}[]:,"')
_PUNCTUATION = ('","', '":"', '"}', "}", '"]', "},{", ",", '":', "\n", " ", '"', "]}", '},{"')
_COMMON = (" the", " and", "The", " of", " a", "A", " in", "-", ".", "'s")
#: what else stands low in any position's list
_ANY = (
    " ", ".", ",", "\n", " I", " is", " to", "s", "e", "'", ":", ";", "(", ")", "1", "0", "2", " (",
    "...", " -", "ing", "ed", " on", " at", " for", "!", "?", " \"", "\n\n", "*",
)  # fmt: skip


class _Unit(NamedTuple):
    """A run of tokens that are one thing: a key, a value, or text between them."""

    #: "key", "value" or "glue"
    kind: str
    #: where a value stands (keys and glue: ())
    path: Path
    #: a value's JSON text (its quotes included), to check it against its mark
    raw: str


class _Token(NamedTuple):
    text: str
    unit: int


def tokens(text: str) -> list[str]:
    """``text`` split into the tokens an OpenAI model would spell it with (plausibly, not exactly:
    no real vocabulary); they concatenate to ``text``."""
    return [token.text for token in _scan(text)[0]]


def content_logprobs(
    text: str, marks: Mapping[Path, Mark] | None, *, seed: int, top: int, strict: bool
) -> list[JSON]:
    """``choices[0].logprobs.content`` for the message content ``text``: an entry per token, drawn
    from ``seed`` and ``text`` (the same answer always gets the same logprobs). ``marks``: the fill's
    leaves (None: an answer the schema's fill did not give); ``top``: how many ``top_logprobs``;
    ``strict``: a json_schema answer, whose keys the grammar forces."""
    pieces, units = _scan(text)
    rng = random.Random((seed & 0xFFFFFFFF) << 32 | zlib.crc32(text.encode()))
    per_unit: dict[int, list[int]] = {}
    for i, token in enumerate(pieces):
        per_unit.setdefault(token.unit, []).append(i)
    logprobs = [0.0] * len(pieces)
    firsts: dict[int, str] = {}  # a wrong value's first token → the right value's first token
    for unit_index, at in per_unit.items():
        unit = units[unit_index]
        if unit.kind == "value":
            mark = marks.get(unit.path) if marks is not None else None
            if mark is not None and orjson.dumps(mark.value).decode() != unit.raw:
                mark = None  # not the value the fill put here
            c = _confidence(rng, mark)
            first = 0
            if mark is not None and mark.value != mark.right:
                # The model hesitated where the answer parts from the right value: that token
                # takes most of the doubt, and the right value's token is its runner-up.
                right = _value_pieces(mark.right)
                first = next(
                    (k for k, i in enumerate(at) if k >= len(right) or right[k] != pieces[i].text),
                    len(at) - 1,
                )
                if first < len(right):
                    firsts[at[first]] = right[first]
            _spread(logprobs, at, math.log(c), first)
        elif unit.kind == "key":
            for i in at:
                logprobs[i] = 0.0 if strict else _tiny(rng)
        else:
            for i in at:
                logprobs[i] = _glue_logprob(rng, pieces[i].text)
    entries: list[JSON] = []
    for i, token in enumerate(pieces):
        logprob = logprobs[i] if logprobs[i] < 0 else 0.0
        alternatives = _alternatives(rng, token.text, logprob, top, firsts.get(i)) if top else []
        entries.append(
            {
                "token": token.text,
                "logprob": logprob,
                "bytes": list(token.text.encode()),
                "top_logprobs": alternatives,
            }
        )
    return entries


# --- drawing ---------------------------------------------------------------------------------------


def _confidence(rng: random.Random, mark: Mark | None) -> float:
    """The joint probability of a value's tokens (see the module)."""
    q = max(mark.chance if mark is not None else 0.0, FLOOR)
    q = min(q, 1 - FLOOR)
    a, b = (1 - q) * KAPPA, q * KAPPA
    wrong = mark is not None and mark.value != mark.right
    c = rng.betavariate(a, b + 1) if wrong else rng.betavariate(a + 1, b)
    return min(max(c, _LEAST), 1.0)


def _spread(logprobs: list[float], at: list[int], total: float, first: int) -> None:
    """``total`` over the tokens ``at``: most of it on the ``first``-th, the rest evenly."""
    if len(at) == 1:
        logprobs[at[0]] = total
        return
    rest = total * (1 - _FIRST_SHARE) / (len(at) - 1)
    for i in at:
        logprobs[i] = rest
    logprobs[at[first]] = total * _FIRST_SHARE


def _tiny(rng: random.Random) -> float:
    """A near-certain token's logprob: between about -1e-7 and -2e-3."""
    return -math.exp(rng.uniform(-16.0, -6.0))


def _glue_logprob(rng: random.Random, token: str) -> float:
    if not token.strip() or not any(char.isalnum() for char in token):
        return 0.0 if rng.random() < 0.3 else _tiny(rng)
    return -math.exp(rng.uniform(-12.0, -0.5))  # words of free text: mostly sure, sometimes not


def _alternatives(rng: random.Random, token: str, logprob: float, top: int, right: str | None) -> list[JSON]:
    """The ``top`` most likely tokens at a position: ``token`` (the answer is each position's most
    likely token), then others with shares of what probability is left."""
    chosen = math.exp(logprob)
    left = max(1.0 - chosen, 1e-12)
    decay = rng.uniform(0.25, 0.6)
    out = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
    seen = {token}
    share, below = 1 - decay, chosen
    for candidate in _candidates(token, right, rng):
        if len(out) >= top:
            break
        if candidate in seen or not candidate:
            continue
        seen.add(candidate)
        p = below = min(left * share, below * 0.9)
        share *= decay
        alternative = max(math.log(p) if p > 0 else _FLOOR_LOGPROB, _FLOOR_LOGPROB)
        out.append({"token": candidate, "logprob": alternative, "bytes": list(candidate.encode())})
    return out


def _candidates(token: str, right: str | None, rng: random.Random) -> Iterator[str]:
    """Other tokens a model could have written here, likeliest first (as many as asked for)."""
    if right:
        yield right
    core = token.strip()
    if core.isdigit():
        number = int(core)
        space = " " if token.startswith(" ") else ""
        yield from (f"{space}{number + d}" for d in (1, -1, 2, -2, 10, -10, 5) if number + d >= 0)
    elif core.isalpha():
        bare = token.lstrip()
        yield bare if token.startswith(" ") else " " + bare
        yield from (token.lower(), token.capitalize(), token.upper(), token[:-1], token + "s")
        yield from _rotated(_COMMON, rng)
    elif any(char in _JSON_CHARS for char in token):
        yield from _rotated(_PUNCTUATION, rng)
    yield from _ANY  # never short of distinct tokens, whatever ``top``


def _rotated(pool: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    at = rng.randrange(len(pool))
    return pool[at:] + pool[:at]


def _value_pieces(value: Any) -> list[str]:
    """The tokens that spell ``value`` in a JSON answer (a string's without its quotes)."""
    raw = orjson.dumps(value).decode()
    if isinstance(value, str):
        raw = raw[1:-1]
    return [match.group() for match in _PIECES.finditer(raw)]


# --- tokens ----------------------------------------------------------------------------------------


def _scan(text: str) -> tuple[list[_Token], list[_Unit]]:
    """``text`` as tokens, each in a unit. JSON is followed where it stands (a fence or other text
    around it is glue); text that never opens an object or a list is glue from end to end."""
    scanner = _Scanner(text)
    scanner.run()
    return scanner.pieces, scanner.units


class _Frame:
    """An open object or list."""

    __slots__ = ("expect_key", "is_object", "place")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        #: an object's current key, a list's current index
        self.place: str | int = "" if is_object else 0
        self.expect_key = is_object


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pieces: list[_Token] = []
        self.units: list[_Unit] = []
        self.stack: list[_Frame] = []
        self.glue = 0  # where the text not yet in a token starts

    def run(self) -> None:
        text, at, size = self.text, 0, len(self.text)
        while at < size:
            char = text[at]
            if not self.stack:  # before (or after) the JSON: glue, until an object or a list opens
                if char in "{[":
                    self.stack.append(_Frame(char == "{"))
                at += 1
            elif char == '"':
                at = self._string(at)
            elif char in "{}[]:,":
                self._punctuation(char)
                at += 1
            elif char == "-" or char.isdigit() or char in "tfn":
                at = self._literal(at)
            else:
                at += 1
        self._flush(size)

    def _punctuation(self, char: str) -> None:
        frame = self.stack[-1]
        if char in "{[":
            self.stack.append(_Frame(char == "{"))
        elif char in "}]":
            self.stack.pop()
        elif char == ":":
            frame.expect_key = False
        elif frame.is_object:
            frame.expect_key = True
        else:
            assert isinstance(frame.place, int)
            frame.place += 1

    def _string(self, at: int) -> int:
        """A key or a string value opening at ``at``; where the scan goes on."""
        text, frame = self.text, self.stack[-1]
        end = _string_end(text, at + 1)
        self._flush(at + 1)  # the opening quote goes with the punctuation before it
        raw = text[at : end + 1]
        if frame.is_object and frame.expect_key:
            frame.place = _key(raw)
            index = self._unit("key", (), raw)
        else:
            index = self._unit("value", self._path(), raw)
        self.pieces.extend(_Token(match.group(), index) for match in _PIECES.finditer(text, at + 1, end))
        self.glue = end  # and the closing one with the punctuation after it
        return end + 1

    def _literal(self, at: int) -> int:
        """A number, true, false or null at ``at`` (anything else there is glue)."""
        frame = self.stack[-1]
        end = _literal_end(self.text, at)
        if end == at or (frame.is_object and frame.expect_key):
            return at + 1
        self._flush(at)
        index = self._unit("value", self._path(), self.text[at:end])
        self.pieces.extend(_Token(match.group(), index) for match in _PIECES.finditer(self.text, at, end))
        self.glue = end
        return end

    def _unit(self, kind: str, path: Path, raw: str) -> int:
        self.units.append(_Unit(kind, path, raw))
        return len(self.units) - 1

    def _flush(self, end: int) -> None:
        """The glue up to ``end`` as tokens."""
        if self.glue < end:
            index = self._unit("glue", (), "")
            self.pieces.extend(
                _Token(match.group(), index) for match in _GLUE.finditer(self.text, self.glue, end)
            )
            self.glue = end

    def _path(self) -> Path:
        return tuple(frame.place for frame in self.stack)


def _string_end(text: str, at: int) -> int:
    """The index of the quote that closes the string whose content starts at ``at`` (``len(text)``
    when it never closes: a cut-short answer)."""
    size = len(text)
    while at < size:
        char = text[at]
        if char == "\\":
            at += 2
        elif char == '"':
            return at
        else:
            at += 1
    return size


def _literal_end(text: str, at: int) -> int:
    for literal in _LITERALS:
        if text.startswith(literal, at):
            return at + len(literal)
    match = _NUMBER.match(text, at)
    return match.end() if match else at


def _key(raw: str) -> str:
    try:
        key = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.strip('"')
    return key if isinstance(key, str) else raw
