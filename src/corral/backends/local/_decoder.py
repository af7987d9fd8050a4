"""Many sequences decoded together: continuous batching for the embedded model.

One generation at a time leaves a small model's CPU work memory-bound: every token reads all the
weights to multiply one vector. llama.cpp decodes several sequences in one ``llama_batch`` (each token
tagged with its sequence), so the weights are read once for all of them. A :class:`Decoder` owns a
llama.cpp context with room for ``slots`` sequences and runs one loop on its own thread:

    requests ─► queue ─► admit into a free slot (its prompt's shared head copied, not evaluated again)
        ─► one batch: each new sequence's prompt tokens, each running sequence's last token
        ─► llama_decode ─► each sequence samples its next token under its own grammar ─► finished?
           (end of generation, max_tokens, a repeating loop, cancelled) ─► its slot is free at once

Every llama.cpp call happens on that thread (llama.cpp is not thread-safe). The few-shot prompt's
head (instruction and examples, the same for every item of a schema) is evaluated once into a
sequence of its own and shared by copy (``llama_memory_seq_cp``: the cells are shared, not copied).

Sampling at temperature 0 takes the raw argmax and asks the grammar about that one token; only when
the grammar refuses it is the grammar applied to the whole vocabulary (262,144 tokens for Gemma 3),
the way llama.cpp's own server samples. The answer is the same; the cost is one token's check.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decoded", "Decoder", "Sequence", "repeating"]

#: tokens of a prompt evaluated per sequence and batch, so that one long prompt does not hold up
#: the tokens of every running sequence for long
_PROMPT_CHUNK = 256
#: a shared head shorter than this is evaluated with each prompt instead (copying it saves nothing)
_MIN_SHARED = 32
_LOOP_MIN = 8  # tokens; shorter repeats ("a", "a", "a") can be genuine


@dataclass(slots=True)
class Decoded:
    """What a sequence produced: each token's bytes (a character may be split across tokens) and,
    when asked, its log-probability; why it ended ("stop", "length", "looped", "cancelled"); and its
    prompt's length in tokens."""

    pieces: list[bytes]
    logprobs: list[float] | None
    finish: str
    prompt_tokens: int


@dataclass(slots=True)
class Sequence:
    """One request to decode: ``tokens`` (the whole prompt), of which the first ``head`` tokens are
    the part every request of its kind shares, held to ``grammar`` (GBNF)."""

    tokens: list[int]
    head: int
    grammar: bytes
    max_tokens: int
    #: run on the decoder's thread before the sequence is admitted (tokenising, say): it may fill in
    #: the fields above; what it raises is the sequence's result
    prepare: Callable[[Sequence], None] | None = None
    temperature: float = 0.0
    seed: int = 0
    logprobs: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: concurrent.futures.Future[Decoded] = field(default_factory=concurrent.futures.Future)
    # --- the decoder's own state ---
    slot: int = -1
    evaluated: int = 0
    generated: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    sampler: Any = None
    #: where this sequence's logits are in the batch just decoded (-1: none this step)
    row: int = -1


def _settle(sequence: Sequence, outcome: Decoded | BaseException) -> None:
    """``sequence``'s result, unless it has one: the awaiting side cancels the future it waits on
    (``asyncio.wrap_future`` does), and setting a cancelled future raises, which must never end the
    decoder's thread (every later request would wait on it for ever)."""
    future = sequence.result
    if future.done():
        return
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except concurrent.futures.InvalidStateError:  # cancelled in between, from the event loop
        pass


def repeating(out: list[int]) -> bool:
    """Whether a generation is caught in a loop: its last run of at least ``_LOOP_MIN`` tokens
    three times over. A small model that cannot find what it is asked for tends to repeat one list
    element until ``max_tokens`` (measured: 300 tokens, ~20 s, for a text mentioning nobody); the
    reply is then incomplete JSON, which the engine re-asks or reports like any other."""
    for period in range(_LOOP_MIN, len(out) // 3 + 1):
        if out[-period:] == out[-2 * period : -period] == out[-3 * period : -2 * period]:
            return True
    return False


class Decoder:
    """Decodes up to ``slots`` sequences together on one thread (see the module's docstring).

    ``submit`` hands a sequence over from any thread; its ``result`` future resolves when it ends.
    ``setup`` runs first on the decoder's thread and returns the llama.cpp model (loading it there).
    """

    def __init__(self, setup: Callable[[], Any], *, slots: int, n_ctx: int, n_threads: int) -> None:
        self.slots = slots
        self.n_ctx = n_ctx
        self._setup = setup
        self._threads = n_threads
        self._queue: queue.SimpleQueue[Sequence | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="corral-llama-batch", daemon=True)
        self._thread.start()

    def submit(self, sequence: Sequence) -> concurrent.futures.Future[Decoded]:
        self._queue.put(sequence)
        return sequence.result

    def close(self) -> None:
        """Stop the loop (sequences still running end as cancelled) and free the context."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # --- on the decoder's thread ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            state = _State(self._setup(), slots=self.slots, n_ctx=self.n_ctx, n_threads=self._threads)
        except BaseException as exc:  # the model did not load: every request gets why
            self._fail_all(exc)
            return
        try:
            self._loop(state)
        finally:
            state.close()

    def _fail_all(self, exc: BaseException) -> None:
        while True:
            sequence = self._queue.get()
            if sequence is None:
                return
            _settle(sequence, exc)

    def _loop(self, state: _State) -> None:
        waiting: list[Sequence] = []
        while True:
            # Take what has arrived; with nothing running, wait for it.
            if not self._arrived(waiting, block=not state.running and not waiting):
                for sequence in [*state.running, *waiting]:
                    state.finish(sequence, "cancelled")
                return
            self._admit(state, waiting)
            if state.running:
                try:
                    state.step()
                except Exception as exc:  # llama.cpp failed: the sequences in it fail, the loop goes on
                    for sequence in list(state.running):
                        state.drop(sequence)
                        _settle(sequence, exc)

    def _arrived(self, waiting: list[Sequence], *, block: bool) -> bool:
        """The sequences submitted since, onto ``waiting``; False once :meth:`close` was called."""
        while True:
            try:
                got = self._queue.get(block=block)
            except queue.Empty:
                return True
            if got is None:
                return False
            waiting.append(got)
            block = False

    @staticmethod
    def _admit(state: _State, waiting: list[Sequence]) -> None:
        """As many waiting sequences into free slots as there are slots."""
        while waiting and state.free:
            sequence = waiting.pop(0)
            if sequence.cancelled.is_set():
                _settle(sequence, Decoded([], None, "cancelled", len(sequence.tokens)))
                continue
            try:
                if sequence.prepare is not None:
                    sequence.prepare(sequence)
                state.admit(sequence)
            except Exception as exc:  # the sequence's own problem (too long, a bad grammar)
                state.drop(sequence)
                _settle(sequence, exc)


class _State:
    """The llama.cpp context, its batch and the sequences in it (the decoder thread's alone)."""

    def __init__(self, model: Any, *, slots: int, n_ctx: int, n_threads: int) -> None:
        import llama_cpp

        self.api = llama_cpp
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = n_ctx
        params = llama_cpp.llama_context_default_params()
        # One more sequence than slots: the shared head lives in the last one.
        self.head_seq = slots
        params.n_seq_max = slots + 1
        # Every sequence may fill n_ctx; one unified cache lets a copied head's cells be shared.
        params.kv_unified = True
        params.n_ctx = n_ctx * (slots + 1)
        params.n_batch = params.n_ubatch = max(512, slots * 8)
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not make a context for batched decoding")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_batch = int(params.n_batch)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.free = list(range(slots - 1, -1, -1))
        self.running: list[Sequence] = []
        self.head: list[int] = []  # the tokens the head sequence holds
        self._one = (llama_cpp.llama_token_data * 1)()
        self._buffer = ctypes.create_string_buffer(64)

    def close(self) -> None:
        for sequence in self.running:
            self._release(sequence)
        self.api.llama_batch_free(self.batch)
        self.api.llama_free(self.ctx)

    # --- sequences in and out --------------------------------------------------------------------

    def admit(self, sequence: Sequence) -> None:
        api = self.api
        sequence.slot = self.free.pop()
        sequence.sampler = self._sampler(sequence)
        if sequence.sampler is None:
            raise RuntimeError("llama.cpp rejected the grammar")
        head = sequence.tokens[: min(sequence.head, len(sequence.tokens) - 1)]
        if len(head) >= _MIN_SHARED:
            if head != self.head:
                self._evaluate_head(head)
            api.llama_memory_seq_cp(self.memory, self.head_seq, sequence.slot, 0, len(head))
            sequence.evaluated = len(head)
        self.running.append(sequence)

    def _evaluate_head(self, head: list[int]) -> None:
        """The shared head, evaluated once into its own sequence (no logits: nothing samples there).
        Sequences that copied the previous head keep its cells."""
        api = self.api
        api.llama_memory_seq_rm(self.memory, self.head_seq, -1, -1)
        self.head = []
        for start in range(0, len(head), self.n_batch):
            part = head[start : start + self.n_batch]
            batch = self.batch
            batch.n_tokens = 0
            for offset, token in enumerate(part):
                self._add(token, start + offset, self.head_seq, logits=False)
            if api.llama_decode(self.ctx, batch) != 0:
                api.llama_memory_seq_rm(self.memory, self.head_seq, -1, -1)
                raise RuntimeError("llama.cpp could not evaluate the prompt's shared head")
        self.head = list(head)

    def drop(self, sequence: Sequence) -> None:
        """A sequence that could not start: whatever it took is given back."""
        self._release(sequence)
        if sequence in self.running:
            self.running.remove(sequence)

    def finish(self, sequence: Sequence, why: str) -> None:
        self.drop(sequence)
        if not sequence.result.done():
            logprobs = sequence.scores if sequence.logprobs else None
            pieces = [self._piece(token) for token in sequence.generated]
            _settle(sequence, Decoded(pieces, logprobs, why, len(sequence.tokens)))

    def _piece(self, token: int) -> bytes:
        size = self.api.llama_token_to_piece(self.vocab, token, self._buffer, len(self._buffer), 0, False)
        if size < 0:  # a longer piece than the buffer holds: make room, ask again
            self._buffer = ctypes.create_string_buffer(-size)
            size = self.api.llama_token_to_piece(self.vocab, token, self._buffer, len(self._buffer), 0, False)
        return self._buffer.raw[:size]

    def _release(self, sequence: Sequence) -> None:
        if sequence.slot >= 0:
            self.api.llama_memory_seq_rm(self.memory, sequence.slot, -1, -1)
            self.free.append(sequence.slot)
            sequence.slot = -1
        if sequence.sampler is not None:
            self.api.llama_sampler_free(sequence.sampler)
            sequence.sampler = None

    def _sampler(self, sequence: Sequence) -> Any:
        api = self.api
        chain = api.llama_sampler_chain_init(api.llama_sampler_chain_default_params())
        grammar = api.llama_sampler_init_grammar(self.vocab, sequence.grammar, b"root")
        if not grammar:
            api.llama_sampler_free(chain)
            return None
        api.llama_sampler_chain_add(chain, grammar)
        if sequence.temperature > 0:
            api.llama_sampler_chain_add(chain, api.llama_sampler_init_temp(sequence.temperature))
            api.llama_sampler_chain_add(chain, api.llama_sampler_init_dist(sequence.seed & 0xFFFFFFFF))
        else:
            api.llama_sampler_chain_add(chain, api.llama_sampler_init_greedy())
        return chain

    # --- one step --------------------------------------------------------------------------------

    def step(self) -> None:
        """One batch: each sequence's next prompt chunk or its last token; then each samples."""
        for sequence in list(self.running):
            if sequence.cancelled.is_set():
                self.finish(sequence, "cancelled")
        if not self._fill():
            return
        if self.api.llama_decode(self.ctx, self.batch) != 0:
            # No room in the cache (it is sized for every slot, so this is not expected): the
            # sequences of this step end as cut off, and the engine re-asks them.
            for sequence in list(self.running):
                if sequence.row >= 0:
                    self.finish(sequence, "length")
            return
        for sequence in list(self.running):
            if sequence.row >= 0:
                self._sample(sequence)

    def _fill(self) -> bool:
        """The batch of this step: a chunk of each new sequence's prompt (logits for its last token
        only), the last token of each running one. False: nothing to decode."""
        batch = self.batch
        batch.n_tokens = 0
        room = self.n_batch
        for sequence in self.running:
            sequence.row = -1
            prompt = sequence.tokens
            if sequence.evaluated < len(prompt):
                take = min(len(prompt) - sequence.evaluated, _PROMPT_CHUNK, room - 1)
                for position in range(sequence.evaluated, sequence.evaluated + max(take, 0)):
                    last = position == len(prompt) - 1
                    if last:
                        sequence.row = batch.n_tokens
                    self._add(prompt[position], position, sequence.slot, logits=last)
                sequence.evaluated += max(take, 0)
                room -= max(take, 0)
            elif room > 0:
                sequence.row = batch.n_tokens
                position = len(prompt) + len(sequence.generated) - 1
                self._add(sequence.generated[-1], position, sequence.slot, logits=True)
                room -= 1
        return bool(batch.n_tokens)

    def _add(self, token: int, position: int, seq: int, *, logits: bool) -> None:
        batch = self.batch
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = position
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
        batch.n_tokens = i + 1

    def _sample(self, sequence: Sequence) -> None:
        import numpy as np

        api = self.api
        pointer = api.llama_get_logits_ith(self.ctx, sequence.row)
        row = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = -1
        if sequence.temperature <= 0:
            best = int(row.argmax())
            if self._allowed(sequence, best, float(row[best])):
                token = best
                api.llama_sampler_accept(sequence.sampler, token)
        if token < 0:
            token = int(api.llama_sampler_sample(sequence.sampler, self.ctx, sequence.row))
        if sequence.logprobs:
            top = float(row.max())
            total = top + float(np.log(np.exp(row - top).sum()))
            sequence.scores.append(min(float(row[token]) - total, 0.0))
        if api.llama_vocab_is_eog(self.vocab, token):
            if sequence.logprobs:
                sequence.scores.pop()  # the end is not part of the reply
            self.finish(sequence, "stop")
            return
        sequence.generated.append(token)
        out = sequence.generated
        if len(out) >= sequence.max_tokens or len(sequence.tokens) + len(out) >= self.n_ctx:
            self.finish(sequence, "length")
            return
        if repeating(out):
            self.finish(sequence, "looped")

    def _allowed(self, sequence: Sequence, token: int, logit: float) -> bool:
        """Whether the grammar takes ``token`` next: it is asked about that one token alone."""
        api = self.api
        one = self._one
        one[0].id = token  # type: ignore[assignment]  # ctypes converts the int
        one[0].logit = logit
        one[0].p = 0.0
        candidates = api.llama_token_data_array(
            data=ctypes.cast(one, ctypes.POINTER(api.llama_token_data)), size=1, selected=-1, sorted=False
        )
        grammar = api.llama_sampler_chain_get(sequence.sampler, 0)
        api.llama_sampler_apply(grammar, ctypes.byref(candidates))
        return bool(one[0].logit != float("-inf"))
