"""A fake OpenAI-compatible completion server on loopback, speaking llama-server's dialect, for engine tests.

    with serve_completions(deltas=["Hi", " there"]) as fake:
        backend = RemoteBackend(fake.url, slots=4)
        ...
        fake.bodies("/v1/completions")   # every JSON body that route received, in order

Routes: ``GET /v1/models``, ``POST /v1/completions`` (server-sent events when ``"stream"``, else one JSON answer),
``POST /tokenize``, ``GET /props``, ``GET /health``. Each streamed event carries one delta of :attr:`deltas`,
which stands for one generated token; ``max_tokens`` caps them (then ``finish_reason`` is ``"length"``). Like a
server that cannot match stop strings on special tokens, it ignores ``stop``: put ``<|im_end|>`` in a delta to
see what a client does with it. Its tokenizer (:func:`fake_token_count`) gives one token per character, and one
per control token when ``parse_special``.

Change its behaviour by setting attributes between requests:

- ``fail_status``: answer completions with that HTTP status (and an error that quotes the prompt);
- ``hang``: answer nothing on any route until the server stops;
- ``stream = False``: one JSON answer even when asked to stream;
- ``drop_after``: break the stream off after that many deltas; ``error_after``: an error event instead of the rest;
- ``tokenize = False``: no ``/tokenize`` (404); ``report_usage``, ``tokens_per_delta``, ``cached_tokens``;
- ``delay``: seconds between deltas; ``props``: ``/props``' answer (None: 404); ``models_status``, ``models_body``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>")


def fake_token_count(text: str, parse_special: bool) -> int:
    """The fake tokenizer: one token per character, a control token one token when parsed as special."""
    if not parse_special:
        return len(text)
    count = len(text)
    for token in CONTROL_TOKENS:
        count -= text.count(token) * (len(token) - 1)
    return count


@dataclass(frozen=True)
class Received:
    """One request the fake server got: its method, path, headers (names in lower case) and JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # None without one


@dataclass
class FakeCompletions:
    """The fake server's state: what it answers (attributes, see the module docstring) and what it received."""

    deltas: list[str] = field(default_factory=lambda: ["Hi", " there", "!"])
    finish_reason: str = "stop"
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    models_status: int = 200
    models_body: bytes | None = None  # raw answer to /v1/models, instead of the model list
    fail_status: int | None = None
    hang: bool = False  # every route: nothing answered until the server stops
    stream: bool | None = None  # None: stream when asked; False: always one JSON answer
    drop_after: int | None = None
    error_after: int | None = None  # an error event in the stream after this many deltas, as llama-server sends
    tokenize: bool = True
    report_usage: bool = True
    tokens_per_delta: int = 1  # what usage says each delta was (a server may stream several tokens in one event)
    cached_tokens: int = 0  # what usage and timings say was reused of the prompt
    delay: float = 0.0
    props: dict[str, Any] | None = None
    url: str = ""
    received: list[Received] = field(default_factory=list)
    aborted: threading.Event = field(default_factory=threading.Event)  # the client hung up mid-stream
    stopping: threading.Event = field(default_factory=threading.Event)

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received on ``path``, oldest first."""
        return [request.body for request in self.received if request.path == path]


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close, so no test leaves one running (or a socket open) behind it.
    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeCompletions) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def hang_up_all(self) -> None:
        """End every open connection, so handlers waiting on a kept-alive one finish now, not at their timeout."""
        with self.lock:
            for connection in self.connections:
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is what some tests do
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as real servers do
    timeout = 2  # an idle keep-alive connection ends, so closing the server never waits long
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read what was received from FakeCompletions.received

    def do_GET(self) -> None:
        fake = self.server.fake
        if self._received("GET", None):
            return
        if self.path == "/v1/models":
            if fake.models_body is not None:
                self._send(fake.models_status, fake.models_body, "text/html")
            else:
                listing = {"object": "list", "data": [{"id": name, "object": "model"} for name in fake.models]}
                self._send_json(fake.models_status, listing)
        elif self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/props" and fake.props is not None:
            self._send_json(200, fake.props)
        else:
            self._send_json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length)) if length else None
        if self._received("POST", body):
            return
        if self.path == "/v1/completions":
            self._complete(fake, body)
        elif self.path == "/tokenize" and fake.tokenize:
            count = fake_token_count(body["content"], bool(body.get("parse_special", True)))
            self._send_json(200, {"tokens": list(range(count))})
        else:
            self._send_json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    def _received(self, method: str, body: Any) -> bool:
        """Record the request; True if the server is to hang instead of answering it."""
        fake = self.server.fake
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake.received.append(Received(method, self.path, headers, body))
        if fake.hang:
            fake.stopping.wait(30)
            self.close_connection = True
        return fake.hang

    def _complete(self, fake: FakeCompletions, body: dict[str, Any]) -> None:
        if fake.fail_status is not None:
            message = f"failed on prompt {body['prompt']!r}"  # a real server may quote the prompt: never show it
            error = {"code": fake.fail_status, "message": message, "type": "server_error"}
            self._send_json(fake.fail_status, {"error": error})
            return
        limit = body.get("max_tokens")
        deltas = fake.deltas if limit is None else fake.deltas[:limit]
        finish = "length" if len(deltas) < len(fake.deltas) else fake.finish_reason
        usage = {
            "prompt_tokens": fake_token_count(body["prompt"], True),
            "completion_tokens": len(deltas) * fake.tokens_per_delta,
            "prompt_tokens_details": {"cached_tokens": fake.cached_tokens},
        }
        if not body.get("stream") or fake.stream is False:
            choice = {"text": "".join(deltas), "index": 0, "logprobs": None, "finish_reason": finish}
            answer: dict[str, Any] = {"object": "text_completion", "model": body.get("model"), "choices": [choice]}
            if fake.report_usage:
                answer["usage"] = usage
            self._send_json(200, answer)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._chunk(b": ping\n\n")  # a comment line, as llama-cpp-python's server sends
            for index, delta in enumerate(deltas):
                if fake.drop_after is not None and index == fake.drop_after:
                    self.close_connection = True  # no terminating chunk: the client sees a broken body
                    return
                if fake.error_after is not None and index == fake.error_after:
                    error = {"code": 500, "message": f"{body['prompt']!r} broke", "type": "server_error"}
                    self._event({"error": error})  # then the stream ends, as llama-server's does
                    self.wfile.write(b"0\r\n\r\n")
                    return
                last = index == len(deltas) - 1
                self._event(_chunk_event(body, delta, finish if last else None))
                if fake.delay:
                    time.sleep(fake.delay)
            if not deltas:
                self._event(_chunk_event(body, "", finish))
            options = body.get("stream_options") or {}
            if fake.report_usage and options.get("include_usage"):
                timings = {"prompt_n": usage["prompt_tokens"] - fake.cached_tokens, "cache_n": fake.cached_tokens}
                self._event({"object": "text_completion", "choices": [], "usage": usage, "timings": timings})
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            fake.aborted.set()
            self.close_connection = True

    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, content: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def _chunk_event(body: dict[str, Any], delta: str, finish: str | None) -> dict[str, Any]:
    choice = {"text": delta, "index": 0, "logprobs": None, "finish_reason": finish}
    return {"object": "text_completion", "model": body.get("model"), "choices": [choice]}


@contextmanager
def serve_completions(**behaviour: Any) -> Iterator[FakeCompletions]:
    """Run a fake completion server on a free loopback port for the block; ``behaviour`` sets its attributes."""
    fake = FakeCompletions(**behaviour)
    server = _Server(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-completions", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()  # release hanging handlers before joining them
        server.shutdown()
        server.hang_up_all()
        server.server_close()
        thread.join()
