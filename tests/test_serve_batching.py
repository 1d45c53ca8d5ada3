"""The dynamic batcher of `codealign serve` (alignment.serve.engine): which requests share a generate call.

A recording stand-in for the model answers each prompt with its own text, so the tests see exactly which
prompts went into which call; everything is submitted before the batcher runs, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from alignment.generation import SampledCompletion
from alignment.serve.config import BatchingConfig
from alignment.serve.engine import Batcher, Choice, Engine, Job


class Recorder:
    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[tuple[list[str], object]] = []
        self.gate = gate

    def __call__(self, prompts, params, batch_size):
        self.calls.append((list(prompts), params))
        if self.gate is not None:
            self.gate.wait(60)
        return [SampledCompletion(f"<{p}>", [1, 2, 3], True) for p in prompts]


def _job(prompts, n=1, max_tokens=8, temperature=0.8, top_p=1.0, seed=None) -> Job:
    return Job(list(prompts), n, max_tokens, temperature, top_p, seed)


async def _serve(generate, jobs, **cfg):
    batcher = Batcher(generate, BatchingConfig(**{"wait_ms": 50.0, **cfg}))
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(j) for j in jobs)), batcher.stats
    finally:
        await batcher.stop()


def test_concurrent_requests_share_one_generate_call():
    generate = Recorder()
    jobs = [_job([f"p{i}"], n=2, max_tokens=4 + i) for i in range(6)]
    results, stats = asyncio.run(_serve(generate, jobs, max_batch_size=32))
    assert len(generate.calls) == 1 and stats.calls == 1 and stats.largest == 6
    prompts, params = generate.calls[0]
    assert prompts == [p for i in range(6) for p in [f"p{i}"] * 2]  # n samples = the prompt n times
    assert params.max_new_tokens == 9  # the largest max_tokens; each completion is cut to its own later
    assert [[c.text for c in r] for r in results] == [[f"<p{i}>"] * 2 for i in range(6)]


def test_a_batch_holds_at_most_max_batch_size_sequences():
    generate = Recorder()
    jobs = [_job([f"p{i}"], n=3) for i in range(5)]  # 15 sequences, batches of at most 6
    results, stats = asyncio.run(_serve(generate, jobs, max_batch_size=6))
    assert [len(prompts) for prompts, _ in generate.calls] == [6, 6, 3]
    assert (stats.calls, stats.sequences, stats.jobs) == (3, 15, 5)
    assert [r[0].text for r in results] == [f"<p{i}>" for i in range(5)]  # order kept across calls


def test_one_request_at_a_time_when_max_batch_size_is_one():
    generate = Recorder()
    asyncio.run(_serve(generate, [_job([f"p{i}"]) for i in range(4)], max_batch_size=1))
    assert [prompts for prompts, _ in generate.calls] == [["p0"], ["p1"], ["p2"], ["p3"]]


def test_only_compatible_requests_share_a_call():
    generate = Recorder()
    jobs = [
        _job(["a"], temperature=0.8),
        _job(["b"], temperature=0.2),
        _job(["c"], temperature=0.8),
        _job(["d"], top_p=0.5),
        _job(["e"], seed=7),
        _job(["f"], seed=7),
    ]
    asyncio.run(_serve(generate, jobs, max_batch_size=32))
    calls = [prompts for prompts, _ in generate.calls]
    assert calls == [["a", "c"], ["b"], ["d"], ["e"], ["f"]]  # a seeded request is always served alone
    seeded = [params.seed for prompts, params in generate.calls if prompts in (["e"], ["f"])]
    assert seeded == [7, 7]


def test_a_request_withdrawn_before_its_batch_starts_is_never_generated():
    gate = threading.Event()
    generate = Recorder(gate)

    async def scenario():
        batcher = Batcher(generate, BatchingConfig(max_batch_size=1, wait_ms=0))
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(_job(["first"])))
        while not generate.calls:  # the first call is running (held by the gate)
            await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit(_job(["gone"])))
        last = asyncio.ensure_future(batcher.submit(_job(["last"])))
        await asyncio.sleep(0)
        gone.cancel()  # what the app does when the client disconnects
        gate.set()
        try:
            return await first, await last, batcher.stats
        finally:
            await batcher.stop()

    first, last, stats = asyncio.run(scenario())
    assert [prompts for prompts, _ in generate.calls] == [["first"], ["last"]]
    assert stats.dropped == 1 and first[0].text == "<first>" and last[0].text == "<last>"


def test_a_failing_generate_fails_its_requests_and_the_next_batch_still_runs():
    def flaky(prompts, params, batch_size):
        if "bad" in prompts:
            raise RuntimeError("boom")
        return [SampledCompletion("ok", [1], True) for _ in prompts]

    async def scenario():
        batcher = Batcher(flaky, BatchingConfig(max_batch_size=1, wait_ms=0))
        batcher.start()
        try:
            bad = await asyncio.gather(batcher.submit(_job(["bad"])), return_exceptions=True)
            return bad[0], await batcher.submit(_job(["good"]))
        finally:
            await batcher.stop()

    error, good = asyncio.run(scenario())
    assert isinstance(error, RuntimeError) and good[0].text == "ok"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from alignment.generation import load_policy

    return Engine(*load_policy(str(tiny_model_dir)))


def test_finish_cuts_to_max_tokens_and_before_the_first_stop(engine):
    tok = engine.tokenizer
    text = "    x = 1\n    return x + 2\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    whole = SampledCompletion(text, ids, True)
    assert engine.finish(whole, len(ids), []) == Choice(text, len(ids), "stop")
    short = engine.finish(whole, 2, [])
    assert short.finish_reason == "length" and short.completion_tokens == 2
    assert short.text == tok.decode(ids[:2], skip_special_tokens=True) and text.startswith(short.text)
    stopped = engine.finish(whole, len(ids), ["return", "\n"])
    assert stopped.text == "    x = 1" and stopped.finish_reason == "stop"
    assert stopped.completion_tokens == len(tok("    x = 1", add_special_tokens=False)["input_ids"])
    unfinished = SampledCompletion(text, ids, False)
    assert engine.finish(unfinished, 100, ["zzz"]).finish_reason == "length"
