"""The in-process backend: llama.cpp's C API, one model, one context, one KV sequence per active chat.

    backend = LlamaBackend(Path("model.gguf"), context_size=2048, chats=4)
    backend.generate("tg:42", prompt, Sampling(), on_text=print, cancelled=lambda: False)

``llama_cpp.Llama`` keeps the cache of one sequence only, so chats served in turn would each lose theirs at every
switch. Here the context holds ``chats`` sequences side by side (``n_seq_max``, not unified: each gets
``context_size`` cells), and each chat that spoke lately owns one, with the token ids in it. A new prompt is
compared with them: the common prefix stays, the rest is removed (``llama_memory_seq_rm``) and only the new
tokens are decoded. The least recently used chat gives its sequence up when a new one needs it, and simply
starts fresh next time. The reply's token ids are kept as sampled, because re-tokenizing its text can give
other ids and would cut the reusable prefix short.

Every reply ends at ``<|im_end|>`` (or any end-of-generation token); ``<|im_start|>`` can never be sampled (its
logit is -inf), so the model never writes the other side's turn. Not thread-safe: the engine calls it from
its one worker thread.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from doppel.chatml import IM_END, IM_START
from doppel.errors import InputError
from doppel.llama_loader import open_model, quiet_llama_logs
from doppel.system import usable_cpus
from serving.engine.types import Generation, Prompt, PromptPiece, Sampling

log = logging.getLogger(__name__)

_PIECE_CACHE = 4096  # tokenized pieces kept: a chat's old turns are tokenized once


@dataclass
class _Sequence:
    """One chat's KV sequence: the ids now in it, and the text → ids of replies sampled into it."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    sampled: dict[str, list[int]] = field(default_factory=dict)


class LlamaBackend:
    """llama.cpp in this process; see the module docstring."""

    def __init__(
        self,
        model_path: Path,
        *,
        adapter_path: Path | None = None,
        context_size: int = 2048,
        chats: int = 4,
        threads: int | None = None,
        batch: int = 512,
    ) -> None:
        import llama_cpp

        self._api = llama_cpp
        quiet_llama_logs()
        try:
            self._model = open_model(model_path)
        except ValueError as error:
            raise InputError(str(error)) from None
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._adapter = None
        self._batch_size = batch
        self._context_size = context_size
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * chats
        params.n_batch = params.n_ubatch = batch
        params.n_seq_max = chats
        params.kv_unified = False  # each sequence its own context_size cells: one chat can never crowd another out
        params.n_threads = params.n_threads_batch = threads or usable_cpus()
        self._context = llama_cpp.llama_init_from_model(self._model, params)
        if not self._context:
            llama_cpp.llama_model_free(self._model)
            raise InputError(f"{model_path}: llama.cpp could not make a context of {params.n_ctx} tokens")
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._batch = llama_cpp.llama_batch_init(batch, 0, 1)
        self._free_ids = list(range(chats))
        self._chats: OrderedDict[str, _Sequence] = OrderedDict()
        self._pieces: OrderedDict[tuple[str, bool], list[int]] = OrderedDict()
        try:
            if adapter_path is not None:
                self._attach_adapter(adapter_path)
            self.im_start = self._single_token(IM_START, model_path)
            self.im_end = self._single_token(IM_END, model_path)
        except InputError:
            self.close()
            raise

    # -- the Backend protocol ---------------------------------------------------------------------------

    @property
    def context_size(self) -> int:
        return self._context_size

    def count_tokens(self, piece: PromptPiece) -> int:
        return len(self._tokenize(piece.text, piece.special))

    def generate(
        self,
        chat_id: str,
        prompt: Prompt,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> Generation:
        started = time.perf_counter()
        sequence = self._sequence_for(chat_id)
        ids = [token for piece in prompt.pieces for token in self._piece_ids(sequence, piece)]
        limit = self._context_size - sampling.max_tokens
        if limit < 1:
            raise InputError(f"max_tokens {sampling.max_tokens} leaves no room in a context of {self._context_size}")
        if len(ids) > limit:  # one turn longer than the whole budget: keep its end
            ids = ids[len(ids) - limit :]
        reused = self._reuse_prefix(sequence, ids)
        self._decode(sequence, ids[reused:], reused)
        generation = self._sample(sequence, sampling, on_text, cancelled, started)
        generation.prompt_tokens, generation.reused_tokens = len(ids), reused
        return generation

    def prefetch(self, chat_id: str, pieces: tuple[PromptPiece, ...]) -> int:
        """Decode ``pieces`` after what the chat's sequence holds now, before the next prompt asks for them.

        The engine calls this while the chat is idle with what a reply is followed by when the other side
        answers (the closing token, their header): the next prompt then finds those tokens cached. A prompt that
        turns out different simply reuses less. Returns the tokens decoded (0 when the chat holds no sequence).
        """
        sequence = self._chats.get(chat_id)
        if sequence is None or not sequence.tokens:
            return 0
        ids = [token for piece in pieces for token in self._tokenize(piece.text, piece.special)]
        if len(sequence.tokens) + len(ids) >= self._context_size:
            return 0
        self._decode(sequence, ids, len(sequence.tokens))
        return len(ids)

    def close(self) -> None:
        api = self._api
        if self._context:
            api.llama_batch_free(self._batch)
            api.llama_free(self._context)
            self._context = None
        if self._adapter:
            api.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model:
            api.llama_model_free(self._model)
            self._model = None

    # -- what a cached chat costs, for the benchmark and /status ----------------------------------------

    def cached_chats(self) -> dict[str, int]:
        """Token count of each chat whose sequence is kept, most recently used last."""
        return {chat_id: len(sequence.tokens) for chat_id, sequence in self._chats.items()}

    def cached_bytes(self, chat_id: str) -> int:
        """Bytes of state (its KV cache) a cached chat holds now; 0 when it holds none."""
        sequence = self._chats.get(chat_id)
        return int(self._api.llama_state_seq_get_size(self._context, sequence.seq_id)) if sequence else 0

    # -- internals ---------------------------------------------------------------------------------------

    def _attach_adapter(self, adapter_path: Path) -> None:
        api = self._api
        self._adapter = api.llama_adapter_lora_init(self._model, str(adapter_path).encode())
        if not self._adapter:
            raise InputError(f"{adapter_path}: llama.cpp could not load this LoRA adapter for the model")
        adapters = (ctypes.c_void_p * 1)(self._adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if api.llama_set_adapters_lora(self._context, adapters, 1, scales) != 0:
            raise InputError(f"{adapter_path}: llama.cpp could not apply this adapter")

    def _single_token(self, text: str, model_path: Path) -> int:
        ids = self._tokenize(text, special=True)
        if len(ids) != 1:
            raise InputError(f"{model_path}: not a ChatML model ({text} is not one token of its vocabulary)")
        return ids[0]

    def _tokenize(self, text: str, special: bool) -> list[int]:
        key = (text, special)
        cached = self._pieces.get(key)
        if cached is not None:
            self._pieces.move_to_end(key)
            return cached
        data = text.encode("utf-8")
        room = len(data) + 8
        buffer = (self._api.llama_token * room)()
        count = self._api.llama_tokenize(self._vocab, data, len(data), buffer, room, False, special)
        if count < 0:  # llama.cpp says how many it needs
            room = -count
            buffer = (self._api.llama_token * room)()
            count = self._api.llama_tokenize(self._vocab, data, len(data), buffer, room, False, special)
        ids = list(buffer[: max(count, 0)])
        self._pieces[key] = ids
        if len(self._pieces) > _PIECE_CACHE:
            self._pieces.popitem(last=False)
        return ids

    def _piece_ids(self, sequence: _Sequence, piece: PromptPiece) -> list[int]:
        if not piece.special:
            sampled = sequence.sampled.get(piece.text)
            if sampled is not None:
                return sampled
        return self._tokenize(piece.text, piece.special)

    def _sequence_for(self, chat_id: str) -> _Sequence:
        sequence = self._chats.get(chat_id)
        if sequence is not None:
            self._chats.move_to_end(chat_id)
            return sequence
        if not self._free_ids:
            _, evicted = self._chats.popitem(last=False)
            self._api.llama_memory_seq_rm(self._memory, evicted.seq_id, -1, -1)
            self._free_ids.append(evicted.seq_id)
            log.debug("chat evicted from the cache: sequence %d freed", evicted.seq_id)
        sequence = self._chats[chat_id] = _Sequence(self._free_ids.pop())
        return sequence

    def _reuse_prefix(self, sequence: _Sequence, ids: list[int]) -> int:
        """Keep what the sequence shares with ``ids`` (less one token: its logits must be computed again)."""
        common = 0
        for old, new in zip(sequence.tokens, ids, strict=False):
            if old != new:
                break
            common += 1
        common = min(common, len(ids) - 1)
        self._api.llama_memory_seq_rm(self._memory, sequence.seq_id, common, -1)
        del sequence.tokens[common:]
        return common

    def _decode(self, sequence: _Sequence, ids: list[int], start: int) -> None:
        """Feed ``ids`` at positions from ``start``; logits only for the last one."""
        batch, size = self._batch, self._batch_size
        for offset in range(0, len(ids), size):
            chunk = ids[offset : offset + size]
            batch.n_tokens = len(chunk)
            for index, token in enumerate(chunk):
                batch.token[index] = token
                batch.pos[index] = start + offset + index
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = sequence.seq_id
                batch.logits[index] = 0
            batch.logits[len(chunk) - 1] = 1
            status = self._api.llama_decode(self._context, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode failed with status {status}")
            sequence.tokens.extend(chunk)

    def _sample(
        self,
        sequence: _Sequence,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
        started: float,
    ) -> Generation:
        api = self._api
        sampler = self._sampler(sampling)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated: list[int] = []
        pieces: list[str] = []
        timings: dict[str, float] = {}
        stop = "length"
        piece = ctypes.create_string_buffer(256)
        try:
            while len(generated) < sampling.max_tokens:
                if cancelled():
                    stop = "cancelled"
                    break
                token = api.llama_sampler_sample(sampler, self._context, -1)
                if token == self.im_end or api.llama_vocab_is_eog(self._vocab, token):
                    stop = "end"
                    break
                timings.setdefault("first_token", time.perf_counter() - started)
                size = api.llama_token_to_piece(self._vocab, token, piece, len(piece), 0, False)
                if size < 0:  # a longer piece than the buffer: llama.cpp says how long
                    piece = ctypes.create_string_buffer(-size)
                    size = api.llama_token_to_piece(self._vocab, token, piece, len(piece), 0, False)
                text = decoder.decode(piece.raw[: max(size, 0)])
                generated.append(token)
                if text:
                    pieces.append(text)
                    on_text(text)
                self._decode(sequence, [token], len(sequence.tokens))
        finally:
            api.llama_sampler_free(sampler)
        if tail := decoder.decode(b"", final=True):  # a reply cut inside a character
            pieces.append(tail)
            on_text(tail)
        text = "".join(pieces)
        sequence.sampled = {text: generated}  # the reply comes back as the next prompt's piece after ">>>"
        timings["total"] = time.perf_counter() - started
        return Generation(text=text, tokens=len(generated), stop=stop, timings=timings)

    def _sampler(self, sampling: Sampling) -> object:
        api = self._api
        chain = api.llama_sampler_chain_init(api.llama_sampler_chain_default_params())
        vocabulary = api.llama_vocab_n_tokens(self._vocab)
        forbidden = (api.llama_logit_bias * 1)(api.llama_logit_bias(self.im_start, float("-inf")))
        api.llama_sampler_chain_add(chain, api.llama_sampler_init_logit_bias(vocabulary, 1, forbidden))
        if sampling.repeat_penalty != 1.0:
            penalties = api.llama_sampler_init_penalties(
                vocabulary, sampling.repeat_last_n, sampling.repeat_penalty, 0.0, 0.0
            )
            api.llama_sampler_chain_add(chain, penalties)
        if sampling.temperature <= 0:
            api.llama_sampler_chain_add(chain, api.llama_sampler_init_greedy())
            return chain
        api.llama_sampler_chain_add(chain, api.llama_sampler_init_top_p(sampling.top_p, 1))
        api.llama_sampler_chain_add(chain, api.llama_sampler_init_min_p(sampling.min_p, 1))
        api.llama_sampler_chain_add(chain, api.llama_sampler_init_temp(sampling.temperature))
        api.llama_sampler_chain_add(chain, api.llama_sampler_init_dist(sampling.seed))
        return chain
