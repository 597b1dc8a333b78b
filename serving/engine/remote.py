"""The engine backend that talks to an OpenAI-compatible completion server (llama-server, vLLM, Ollama).

For more users than one process can answer: run the model in a server with several slots (or continuous
batching) and point doppel at it with ``--engine-url``::

    llama-server -m model.gguf -c 8192 --parallel 4      # 4 slots of 2048 tokens each
    backend = RemoteBackend("http://127.0.0.1:8080", context_size=2048, slots=4)
    backend.check()                                      # at start: InputError if the server is not there
    reply = backend.generate("tg:42", prompt, Sampling(), on_text=print, cancelled=lambda: False)
    backend.close()

How it talks to the server:

- ``POST /v1/completions`` with the raw ChatML prompt (no chat template: the prompt already is one), streamed as
  server-sent events. ``cache_prompt`` and, with ``slots``, ``id_slot`` are llama-server's: a chat always lands in
  the same slot (:func:`stable_slot`), so the server keeps that chat's prefix in its KV cache between turns. vLLM
  caches prefixes by itself and, like any OpenAI server, ignores the fields it does not know.
- The reply is cut at the first ``<|im_start|>`` or ``<|im_end|>`` whatever the server does with stop strings:
  servers differ in whether a stop string can match a special token, and a turn header must never reach a user.
- ``count_tokens`` asks llama-server's ``POST /tokenize`` (memoised per piece); a server without it gets the same
  generous estimate doppel's ``prepare`` uses, decided once on the first call.

Failures at start (:meth:`RemoteBackend.check`) are :class:`~doppel.errors.InputError` (the user fixes the URL);
failures later are :class:`RemoteEngineError`. Both are one line that names the server and never quote a prompt
or a reply. Prompts and replies are never logged; DEBUG records their sizes only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from doppel.chatml import IM_END, IM_START
from doppel.errors import InputError
from serving.engine.types import Generation, Prompt, PromptPiece, Sampling

log = logging.getLogger(__name__)

CONTROL_TOKENS = (IM_START, IM_END)
STOP_STRINGS = [IM_END, IM_START]  # the turn's end first: that is the stop a well-trained model reaches
TOKEN_COUNT_CACHE = 4096  # pieces: the engine recounts every turn of a chat on every call
NO_TOKENIZE = frozenset({400, 404, 405, 422, 501})  # a first /tokenize answered so: not llama-server's endpoint
_ERROR_TYPE = re.compile(r"[A-Za-z_]{1,48}")  # an OpenAI error "type": safe to show, unlike its message


class RemoteEngineError(RuntimeError):
    """The server failed a request after start: unreachable, an HTTP error, a broken or malformed stream.

    The message is one line naming the server and the reason; it never contains prompt or reply text.
    """


def stable_slot(chat_id: str, slots: int) -> int:
    """The slot (``0 .. slots - 1``) that chat ``chat_id`` always uses, in every process and on every run.

    Python's ``hash()`` of a string is salted per process, so it would move a chat to another slot (and lose its
    cached prefix) at every restart and differ between bot workers; a keyed digest does not.
    """
    digest = hashlib.blake2b(chat_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % slots


def estimate_tokens(text: str) -> int:
    """About 3.5 UTF-8 bytes a token, rounded up: generous across scripts, as ``doppel prepare`` estimates."""
    return (len(text.encode("utf-8")) * 2 + 6) // 7


def normalise_base_url(url: str) -> str:
    """The server's root: ``http://host:8080/v1/`` and ``http://host:8080`` both give ``http://host:8080``."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"engine URL {url!r}: expected http://HOST:PORT or https://HOST[/v1]")
    if parts.query or parts.fragment:
        raise InputError(f"engine URL {url!r}: expected a base URL without a query or fragment")
    path = parts.path.rstrip("/")
    # The OpenAI routes live under /v1 but llama-server's /tokenize, /props and /health at the root, so keep the
    # root and add /v1 per request.
    path = path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


class RemoteBackend:
    """A :class:`~serving.engine.types.Backend` served by an OpenAI-compatible completion server at ``url``.

    ``context_size`` is the prompt-plus-reply budget the engine trims each chat to; it must not exceed what the
    server gives one request (llama-server: its ``-c`` divided by its ``--parallel``; vLLM: ``max_model_len``).
    :meth:`check` refuses a larger one where the server says its size. ``model`` is sent as the request's model
    (None: the first the server lists). ``slots`` pins each chat to one of that many llama-server slots (at most
    its ``--parallel``); None lets the server choose. ``timeout`` bounds connecting and each read (seconds), so
    a stalled stream fails instead of hanging. ``api_key`` is sent as a bearer token.

    Not thread-safe: the engine calls it from its one worker thread.
    """

    def __init__(
        self,
        url: str,
        *,
        context_size: int = 2048,
        model: str | None = None,
        slots: int | None = None,
        timeout: float = 60.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = normalise_base_url(url)
        if context_size < 1:
            raise InputError(f"engine context size must be at least 1, got {context_size}")
        if slots is not None and slots < 1:
            raise InputError(f"engine slots must be at least 1, got {slots}")
        if timeout <= 0:
            raise InputError(f"engine timeout must be positive, got {timeout:g}")
        self.model = model
        self.slots = slots
        self.timeout = timeout
        self._context_size = context_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout))
        self._has_tokenize: bool | None = None  # None until the first count says
        self._token_counts: OrderedDict[PromptPiece, int] = OrderedDict()

    @property
    def context_size(self) -> int:
        """Tokens one chat's prompt and reply may take together (the constructor's value)."""
        return self._context_size

    def check(self) -> None:
        """Make sure an OpenAI-compatible server answers at the URL; learn its model name if none was given.

        Raises :class:`InputError` (one line with the URL and the reason) if it cannot be reached, times out,
        refuses the key, is not OpenAI-compatible, or says it holds less context or fewer slots than asked.
        """
        try:
            answer = self._client.get("/v1/models")
            if answer.status_code == 404:  # an older llama-server without the models route still has /health
                answer = self._client.get("/health")
                self._refuse_unless_ok(answer, "/health")
                listed: list[dict[str, Any]] = []
            else:
                self._refuse_unless_ok(answer, "/v1/models")
                listed = _listed_models(answer)
                if listed is None:
                    raise InputError(self._unreachable("it does not answer like an OpenAI-compatible server"))
        except httpx.HTTPError as error:
            raise InputError(self._unreachable(_reason(error, self.timeout))) from error
        names = [entry["id"] for entry in listed]
        if self.model is None and names:
            self.model = names[0]
        elif self.model is not None and names and self.model not in names:
            # llama-server answers whatever model is named, so this is only worth a warning.
            log.warning("the engine at %s lists %s, not %r; asking for it anyway", self.base_url, names, self.model)
        for entry in listed:
            limit = entry.get("max_model_len")  # vLLM says its context here
            if entry["id"] == self.model and isinstance(limit, int) and self._context_size > limit:
                raise InputError(
                    f"engine context size {self._context_size} is more than the engine at {self.base_url} "
                    f"holds ({limit} tokens)"
                )
        self._check_props()
        log.info("engine at %s: model %s, context %d", self.base_url, self.model or "(server's)", self._context_size)

    def generate(
        self,
        chat_id: str,
        prompt: Prompt,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> Generation:
        """Stream the persona's turn from the server; see :meth:`~serving.engine.types.Backend.generate`.

        Cancellation is noticed between streamed events (a server that sends nothing is bounded by ``timeout``).
        Raises :class:`RemoteEngineError` if the server fails or the stream breaks before the reply ends.
        """
        started = time.perf_counter()
        if cancelled():
            return Generation(text="", tokens=0, stop="cancelled", timings={"total": time.perf_counter() - started})
        body = self.completion_request(chat_id, prompt, sampling)
        log.debug(
            "completion for %s: %d prompt pieces, %d characters", chat_id, len(prompt.pieces), len(body["prompt"])
        )
        stream = _Reply(on_text, started)
        interrupted = False
        try:
            with self._client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise RemoteEngineError(self._http_failure(response, "/v1/completions"))
                if response.headers.get("content-type", "").startswith("application/json"):
                    stream.feed(_decoded(response.read()))  # a server that ignored "stream": one answer
                    stream.done = True
                else:
                    for event in _sse_events(response.iter_lines()):
                        if event is None:
                            stream.done = True
                            break
                        stream.feed(event)
                        if stream.cut:
                            break  # leaving the block closes the response: the server stops generating
                        if cancelled():
                            interrupted = True
                            break
        except httpx.HTTPError as error:
            raise RemoteEngineError(f"the engine at {self.base_url} failed: {_reason(error, self.timeout)}") from error
        except _StreamError as error:
            raise RemoteEngineError(f"the engine at {self.base_url} {error}") from None
        finished = stream.cut or stream.done or stream.finish_reason is not None
        if not finished and not interrupted:
            raise RemoteEngineError(f"the engine at {self.base_url} ended its stream before the reply ended")
        generation = stream.result(cancelled=not finished)
        sizes = (len(generation.text), generation.tokens, generation.stop)
        log.debug("completion for %s: %d characters, %d tokens, stop %s", chat_id, *sizes)
        return generation

    def completion_request(self, chat_id: str, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        """The JSON body of ``POST /v1/completions`` for this prompt (public so that tests and tools can see it)."""
        body: dict[str, Any] = {
            "prompt": prompt.text,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "repeat_last_n": sampling.repeat_last_n,
            "seed": sampling.seed,
            "stream": True,
            "stream_options": {"include_usage": True},  # the server's token counts, where it has them
            "stop": list(STOP_STRINGS),
            "cache_prompt": True,
        }
        if self.model is not None:  # OpenAI requires it; llama-server, the one server that may not list one, does not
            body["model"] = self.model
        if self.slots is not None:
            body["id_slot"] = stable_slot(chat_id, self.slots)
        return body

    def count_tokens(self, piece: PromptPiece) -> int:
        """Tokens ``piece`` takes: the server's tokenizer through ``/tokenize``, else :func:`estimate_tokens`."""
        if not piece.text:
            return 0
        if self._has_tokenize is False:
            return estimate_tokens(piece.text)
        known = self._token_counts.get(piece)
        if known is not None:
            self._token_counts.move_to_end(piece)
            return known
        count = self._tokenize(piece)
        if count is None:
            return estimate_tokens(piece.text)
        self._token_counts[piece] = count
        if len(self._token_counts) > TOKEN_COUNT_CACHE:
            self._token_counts.popitem(last=False)
        return count

    def close(self) -> None:
        self._client.close()

    def _tokenize(self, piece: PromptPiece) -> int | None:
        """The server's count, or None once it is clear the server has no llama-server ``/tokenize``."""
        request = {"content": piece.text, "add_special": False, "parse_special": piece.special}
        try:
            answer = self._client.post("/tokenize", json=request)
        except httpx.HTTPError as error:
            raise RemoteEngineError(f"the engine at {self.base_url} failed: {_reason(error, self.timeout)}") from error
        tokens = None
        if answer.status_code == 200:
            try:
                tokens = answer.json().get("tokens")
            except (ValueError, AttributeError):
                tokens = None
        if isinstance(tokens, list):
            self._has_tokenize = True
            return len(tokens)
        if self._has_tokenize is None and (answer.status_code in NO_TOKENIZE or answer.status_code == 200):
            # Decided once: a server that answers this way now would answer so for every piece.
            self._has_tokenize = False
            log.info("the engine at %s has no /tokenize: estimating tokens from text size", self.base_url)
            return None
        raise RemoteEngineError(self._http_failure(answer, "/tokenize"))

    def _check_props(self) -> None:
        """llama-server's ``/props`` says the context of one slot and how many slots it has: refuse more."""
        try:
            answer = self._client.get("/props")
            props = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return  # not llama-server, or an old one: nothing more to learn
        if not isinstance(props, dict):
            return
        settings = props.get("default_generation_settings")
        per_slot = settings.get("n_ctx") if isinstance(settings, dict) else None
        if isinstance(per_slot, int) and per_slot > 0 and self._context_size > per_slot:
            raise InputError(
                f"engine context size {self._context_size} is more than the engine at {self.base_url} gives one "
                f"slot ({per_slot} tokens: its -c divided by its --parallel)"
            )
        total = props.get("total_slots")
        if self.slots is not None and isinstance(total, int) and total > 0 and self.slots > total:
            raise InputError(f"{self.slots} engine slots asked for, but the engine at {self.base_url} has {total}")

    def _refuse_unless_ok(self, answer: httpx.Response, route: str) -> None:
        if answer.status_code in {401, 403}:
            raise InputError(self._unreachable(f"it refused the API key (HTTP {answer.status_code} on {route})"))
        if answer.status_code != 200:
            raise InputError(self._unreachable(f"it answered HTTP {answer.status_code} on {route}"))

    def _unreachable(self, reason: str) -> str:
        return f"cannot reach the engine at {self.base_url}: {reason}"

    def _http_failure(self, answer: httpx.Response, route: str) -> str:
        """One line for an HTTP error: the status and the error's type, never its message (it may quote a prompt)."""
        try:
            kind = _error_kind(answer.json().get("error"))
        except (ValueError, AttributeError):
            kind = ""
        log.debug(
            "the engine at %s answered HTTP %d with %d bytes", self.base_url, answer.status_code, len(answer.content)
        )
        status = f"HTTP {answer.status_code} on {route} ({answer.reason_phrase}{kind and ', '}{kind})"
        return f"the engine at {self.base_url} answered {status}"


class _StreamError(Exception):
    """An answer that is not a completion (or chunk); the message completes "the engine at URL ..."."""


def _sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any] | None]:
    """The JSON payloads of a server-sent-events stream, then None at ``data: [DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": ping" comments, event:/id: fields
        payload = line[5:].strip()
        if payload == "[DONE]":
            yield None
            return
        yield _decoded(payload)


def _decoded(payload: str | bytes) -> dict[str, Any]:
    """One completion (or chunk of one) as JSON."""
    try:
        answer = json.loads(payload)
    except ValueError:
        raise _StreamError("sent an answer that is not JSON") from None
    if not isinstance(answer, dict):
        raise _StreamError("sent an answer that is not a completion")
    return answer


def _error_kind(error: object) -> str:
    """An OpenAI error's ``type`` (``server_error``...), safe to show, unlike its message; else ""."""
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else ""


class _Reply:
    """The reply as it streams: text up to the first control token, the finish reason, the server's counts."""

    def __init__(self, on_text: Callable[[str], None], started: float) -> None:
        self.on_text = on_text
        self.started = started
        self.parts: list[str] = []
        self.pending = ""  # the tail that may be the start of a control token split across deltas
        self.deltas = 0
        self.cut = False  # a control token came: the turn is over
        self.done = False  # the stream ended properly ([DONE], or a whole non-streamed answer)
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.server_timings: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def feed(self, event: dict[str, Any]) -> None:
        if "error" in event:
            kind = _error_kind(event["error"])
            raise _StreamError(f"reported an error in its stream{kind and f' ({kind})'}")
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        if isinstance(event.get("timings"), dict):
            self.server_timings = event["timings"]
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise _StreamError("sent a stream event without choices")
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise _StreamError("sent a choice that is not an object")
            text = choice.get("text")
            if isinstance(text, str) and text and not self.cut:
                self.deltas += 1
                self._add(text)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]

    def _add(self, text: str) -> None:
        self.pending += text
        found = [at for at in (self.pending.find(token) for token in CONTROL_TOKENS) if at >= 0]
        if found:
            self.cut = True
            self._emit(self.pending[: min(found)])
            self.pending = ""
            return
        hold = _control_token_prefix(self.pending)
        self._emit(self.pending[: len(self.pending) - hold])
        self.pending = self.pending[len(self.pending) - hold :]

    def _emit(self, text: str) -> None:
        if not text:
            return
        self.timings.setdefault("first_token", time.perf_counter() - self.started)
        self.parts.append(text)
        self.on_text(text)

    def result(self, *, cancelled: bool) -> Generation:
        if not cancelled:
            self._emit(self.pending)  # the stream ended: a held tail was text after all
        self.pending = ""
        self.timings["total"] = time.perf_counter() - self.started
        if cancelled:
            stop = "cancelled"
        elif not self.cut and self.finish_reason == "length":
            stop = "length"
        else:
            stop = "end"
        usage, server = self.usage, self.server_timings
        tokens = _first_int(usage.get("completion_tokens"), server.get("predicted_n"))
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        reused = _first_int(cached, server.get("cache_n"))
        prompt_tokens = _first_int(usage.get("prompt_tokens"))
        if prompt_tokens is None and isinstance(server.get("prompt_n"), int):
            prompt_tokens = server["prompt_n"] + (reused or 0)  # llama-server's prompt_n leaves the cached part out
        return Generation(
            text="".join(self.parts),
            # The server's count covers what it generated; once we cut or cancel, it never sends one.
            tokens=tokens if tokens is not None and not (self.cut or cancelled) else self.deltas,
            stop=stop,
            prompt_tokens=prompt_tokens or 0,
            reused_tokens=reused or 0,
            timings=self.timings,
        )


def _control_token_prefix(text: str) -> int:
    """How many characters at the end of ``text`` could begin a control token (held back until the next delta)."""
    longest = max(len(token) for token in CONTROL_TOKENS) - 1
    for size in range(min(len(text), longest), 0, -1):
        if any(token.startswith(text[-size:]) for token in CONTROL_TOKENS):
            return size
    return 0


def _first_int(*values: object) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _listed_models(answer: httpx.Response) -> list[dict[str, Any]] | None:
    """The entries of an OpenAI ``/v1/models`` answer that have an id, or None if it is not such an answer."""
    try:
        document = answer.json()
    except ValueError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        return None
    return [entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("id"), str)]


def _reason(error: httpx.HTTPError, timeout: float) -> str:
    """Why a request failed, in a few words."""
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s (timed out)"
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = detail.lower()
    if isinstance(error, httpx.ConnectError):
        if "refused" in lowered:
            return "connection refused"
        if "name or service" in lowered or "nodename" in lowered or "name resolution" in lowered:
            return "host not found"
        return f"cannot connect ({detail})"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the connection broke off mid-answer"
    return f"{type(error).__name__} ({detail})"
