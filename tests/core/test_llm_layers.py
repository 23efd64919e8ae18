"""The LLM layers (cache, retry, usage, concurrency) and the factory, on a scripted fake."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import LLMCallError, LLMOutputError, ModelNotFoundError
from core.llm.base import (
    Completion,
    CompletionRequest,
    LLMRequestError,
    TextBuffer,
    Usage,
    acomplete_many,
    astream,
    complete,
)
from core.llm.cache import CachedChatModel
from core.llm.factory import make_chat_model
from core.llm.limit import ConcurrencyLimitedChatModel
from core.llm.retry import RetryingChatModel
from core.llm.testing import BrokenStream, ScriptedChatModel, ScriptedStreamingChatModel
from core.llm.usage import UsageCountingChatModel
from core.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}},
    "required": ["a"],
}


def ask(text: str, **kw: object) -> CompletionRequest:
    return CompletionRequest.of([{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


def echo(request: CompletionRequest) -> str:
    return request.messages[-1]["content"].upper()


# --------------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_second_call(tmp_path: Path) -> None:
    fake = ScriptedChatModel(["first answer"])
    cached = CachedChatModel(fake, tmp_path / "llm.sqlite")

    one = complete(cached, ask("q"))
    two = complete(cached, ask("q"))

    assert fake.calls == 1
    assert (one.cached, two.cached) == (False, True)
    assert (two.text, two.prompt_tokens, two.completion_tokens) == (
        one.text, one.prompt_tokens, one.completion_tokens
    )


def test_cache_survives_a_new_process(tmp_path: Path) -> None:
    db = tmp_path / "llm.sqlite"
    complete(CachedChatModel(ScriptedChatModel(["kept"]), db), ask("q"))

    # A fresh interpreter whose fake has no script: any inner call would fail.
    code = (
        "import sys; from pathlib import Path\n"
        "from core.llm.base import CompletionRequest, complete\n"
        "from core.llm.cache import CachedChatModel\n"
        "from core.llm.testing import ScriptedChatModel\n"
        "m = CachedChatModel(ScriptedChatModel(), Path(sys.argv[1]))\n"
        "c = complete(m, CompletionRequest.of([{'role': 'user', 'content': 'q'}]))\n"
        "print(c.text, c.cached)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], cwd=REPO, capture_output=True, text=True,
        check=True,
    )
    assert out.stdout.split() == ["kept", "True"]


@pytest.mark.parametrize(
    "changed",
    [
        ask("other question"),
        ask("q", temperature=0.5),
        ask("q", max_tokens=17),
        ask("q", json_schema=SCHEMA),
        ask("q").with_(seed=7),
    ],
    ids=["messages", "temperature", "max_tokens", "schema", "seed"],
)
def test_cache_misses_when_anything_shaping_the_output_differs(
    tmp_path: Path, changed: CompletionRequest
) -> None:
    fake = ScriptedChatModel(default='{"a": 1}')
    cached = CachedChatModel(fake, tmp_path / "llm.sqlite")
    complete(cached, ask("q"))
    assert not complete(cached, changed).cached
    assert fake.calls == 2


def test_cache_misses_for_another_model_or_other_backend_defaults(tmp_path: Path) -> None:
    db = tmp_path / "llm.sqlite"
    complete(CachedChatModel(ScriptedChatModel(["x"], model_name="m1"), db), ask("q"))

    other_model = ScriptedChatModel(["y"], model_name="m2")
    assert complete(CachedChatModel(other_model, db), ask("q")).text == "y"
    other_defaults = ScriptedChatModel(["z"], model_name="m1")
    cached = CachedChatModel(other_defaults, db, key_extra={"max_tokens": 99})
    assert complete(cached, ask("q")).text == "z"


def test_cache_is_safe_for_concurrent_threads_and_tasks(tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=echo, delay_s=0.001)
    cached = CachedChatModel(fake, tmp_path / "llm.sqlite")
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        reqs = [ask(f"t{t}-q{i}") for i in range(25)]
        results = asyncio.run(acomplete_many(cached, reqs, concurrency=8))
        errors.extend(r for r in results if isinstance(r, BaseException))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(cached.store) == 100
    assert complete(cached, ask("t3-q24")).text == "T3-Q24"


# --------------------------------------------------------------------------------- retry


def test_retry_retries_failed_calls_then_succeeds() -> None:
    fake = ScriptedChatModel([LLMCallError("server down"), TimeoutError(), "ok"])
    sleeps: list[float] = []

    async def record(s: float) -> None:
        sleeps.append(s)

    model = RetryingChatModel(fake, max_retries=3, base_delay_s=1.0, sleep=record)
    assert complete(model, ask("q")).text == "ok"
    assert fake.calls == 3
    # exponential backoff with jitter: attempt n waits within [0.5, 1] x 2**n
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_retry_gives_up_after_max_retries_with_llm_call_error() -> None:
    fake = ScriptedChatModel(default=LLMCallError("server down", hint="start it"))
    model = RetryingChatModel(fake, max_retries=2, base_delay_s=0)
    with pytest.raises(LLMCallError, match="after 3 attempt") as info:
        complete(model, ask("q"))
    assert fake.calls == 3
    assert "server down" in str(info.value) and info.value.hint == "start it"


def test_retry_does_not_resend_a_refused_request_or_hide_bugs() -> None:
    refused = ScriptedChatModel([LLMRequestError("prompt too long")])
    with pytest.raises(LLMRequestError):
        complete(RetryingChatModel(refused, base_delay_s=0), ask("q"))
    assert refused.calls == 1

    buggy = ScriptedChatModel([KeyError("bug")])
    with pytest.raises(KeyError):
        complete(RetryingChatModel(buggy, base_delay_s=0), ask("q"))
    assert buggy.calls == 1


def test_invalid_json_is_resampled_then_accepted() -> None:
    fake = ScriptedChatModel(['{"a": 1', '{"b": 2}', '{"a": 3}'])
    model = RetryingChatModel(fake, max_retries=3, base_delay_s=0)
    result = complete(model, ask("q", json_schema=SCHEMA))
    assert json.loads(result.text) == {"a": 3}
    # a greedy re-run would repeat the bad output: retries use new seeds and some heat
    seeds = [r.seed for r in fake.requests]
    assert len(set(seeds)) == 3
    assert all((r.temperature or 0) >= 0.5 for r in fake.requests[1:])


def test_output_cut_off_is_asked_once_with_twice_the_budget_never_resampled() -> None:
    bad = Completion('{"a": "never closed', "scripted", completion_tokens=40,
                     finish_reason="length")
    fake = ScriptedChatModel(default=bad)
    model = RetryingChatModel(fake, max_retries=3, base_delay_s=0)
    with pytest.raises(LLMOutputError) as info:
        complete(model, ask("q", json_schema=SCHEMA).with_(max_tokens=50))
    assert [r.max_tokens for r in fake.requests] == [50, 100]  # not 4 tries at 50
    assert '{"a": "never closed' in str(info.value)
    assert "max_tokens" in info.value.hint


def test_output_that_stays_invalid_raises_llm_output_error_with_excerpt() -> None:
    fake = ScriptedChatModel(default='{"a": "x", oops}')
    model = RetryingChatModel(fake, max_retries=2, base_delay_s=0)
    with pytest.raises(LLMOutputError) as info:
        complete(model, ask("q", json_schema=SCHEMA))
    assert fake.calls == 3
    assert 'oops' in str(info.value)


def test_plain_text_requests_are_not_json_checked() -> None:
    fake = ScriptedChatModel(["just prose"])
    assert complete(RetryingChatModel(fake), ask("q")).text == "just prose"


def test_an_invalid_schema_fails_before_any_call() -> None:
    fake = ScriptedChatModel(default="{}")
    with pytest.raises(LLMRequestError, match="not a valid JSON Schema"):
        complete(RetryingChatModel(fake), ask("q", json_schema={"type": "nonsense"}))
    assert fake.calls == 0


# --------------------------------------------------------------------------------- usage


def test_usage_counts_calls_cache_hits_failures_and_tokens(tmp_path: Path) -> None:
    fake = ScriptedChatModel(["three word answer", LLMCallError("down")])
    model = UsageCountingChatModel(CachedChatModel(fake, tmp_path / "c.sqlite"))

    complete(model, ask("one two"))
    complete(model, ask("one two"))  # cache hit
    with pytest.raises(LLMCallError):
        complete(model, ask("other"))

    u = model.usage
    assert (u.calls, u.cached_calls, u.failed_calls, u.model_calls) == (2, 1, 1, 1)
    assert (u.prompt_tokens, u.completion_tokens) == (2, 3)  # the hit spent nothing
    assert u.by_model == {"scripted": 2}
    assert u.seconds >= 0

    old = model.reset()
    assert old.calls == 2 and model.usage == Usage()


def test_usage_snapshots_are_copies_and_subtract() -> None:
    model = UsageCountingChatModel(ScriptedChatModel(default="a b"))
    before = model.snapshot()
    complete(model, ask("x"))
    after = model.snapshot()
    complete(model, ask("y"))
    assert after.calls == 1  # not changed by the later call
    spent = after - before
    assert (spent.calls, spent.completion_tokens, spent.by_model) == (1, 2, {"scripted": 1})


def test_usage_counts_exactly_under_concurrency() -> None:
    model = UsageCountingChatModel(ScriptedChatModel(default="a b c"))

    def worker() -> None:
        asyncio.run(acomplete_many(model, [ask("q")] * 50, concurrency=10))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert model.usage.calls == 200 and model.usage.completion_tokens == 600


# --------------------------------------------------------------------------- concurrency


def test_acomplete_many_respects_concurrency_and_keeps_order() -> None:
    fake = ScriptedChatModel(default=echo, delay_s=0.02)
    reqs = [ask(f"q{i}") for i in range(12)]
    results = asyncio.run(acomplete_many(fake, reqs, concurrency=3))
    assert fake.peak_in_flight == 3
    assert [r.text for r in results if isinstance(r, Completion)] == [
        f"Q{i}" for i in range(12)
    ]


def test_acomplete_many_returns_exceptions_per_item() -> None:
    fake = ScriptedChatModel(["a", LLMCallError("boom"), "c"])
    results = asyncio.run(acomplete_many(fake, [ask("1"), ask("2"), ask("3")], concurrency=1))
    assert isinstance(results[0], Completion) and results[0].text == "a"
    assert isinstance(results[1], LLMCallError)
    assert isinstance(results[2], Completion) and results[2].text == "c"


def test_limiter_caps_in_flight_across_threads_and_event_loops() -> None:
    fake = ScriptedChatModel(default="x", delay_s=0.01)
    limited = ConcurrencyLimitedChatModel(fake, limit=2)

    def worker() -> None:
        asyncio.run(acomplete_many(limited, [ask("q")] * 10, concurrency=10))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.calls == 30
    assert fake.peak_in_flight == 2


def test_limiter_gives_back_slots_of_cancelled_waiters() -> None:
    fake = ScriptedChatModel(default="x", delay_s=0.05)
    limited = ConcurrencyLimitedChatModel(fake, limit=2)

    async def scenario() -> None:
        tasks = [asyncio.create_task(limited.acomplete(ask("q"))) for _ in range(6)]
        await asyncio.sleep(0.01)
        for t in tasks[2:]:
            t.cancel()  # four waiters give up
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait_for(acomplete_many(limited, [ask("q")] * 4, concurrency=4), 2)

    asyncio.run(scenario())
    assert fake.peak_in_flight == 2
    assert fake.calls == 6


def test_sync_complete_works_inside_a_running_loop() -> None:
    async def caller() -> str:
        return complete(ScriptedChatModel(["inner"]), ask("q")).text

    assert asyncio.run(caller()) == "inner"


# ------------------------------------------------------------------------------- factory


def test_factory_layers_a_backend_with_usage_cache_and_retry(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, llm_max_retries=1)
    fake = ScriptedChatModel([LLMCallError("blip"), '{"a": 1}'])
    model = make_chat_model(settings, backend=fake)

    first = complete(model, ask("q", json_schema=SCHEMA))
    again = complete(model, ask("q", json_schema=SCHEMA))

    assert (first.text, again.cached, fake.calls) == ('{"a": 1}', True, 2)
    assert (settings.cache_dir / "llm.sqlite").is_file()
    assert (model.usage.calls, model.usage.cached_calls) == (2, 1)


def test_factory_without_cache_calls_the_model_every_time(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, llm_cache=False)
    fake = ScriptedChatModel(default="x")
    model = make_chat_model(settings, backend=fake)
    complete(model, ask("q"))
    complete(model, ask("q"))
    assert fake.calls == 2 and not settings.cache_dir.exists()


def test_factory_says_how_to_get_a_missing_local_model(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, llm_backend="local")
    with pytest.raises(ModelNotFoundError) as info:
        make_chat_model(settings)
    assert "kgrag models install" in info.value.hint


# ----------------------------------------------------------------------------- streaming


def test_a_stream_passes_through_every_layer_in_order_and_is_counted_once(
        tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    fake = ScriptedStreamingChatModel(["Marie Curie was born in Warsaw [1]."])
    model = make_chat_model(settings, backend=fake)  # usage, cache, retry, limit
    sink = TextBuffer()

    first = complete(model, ask("where?"), sink)

    assert sink.pieces == ["Marie ", "Curie ", "was ", "born ", "in ", "Warsaw ", "[1]."]
    assert first.text == "".join(sink.pieces) == sink.text
    assert (model.usage.calls, model.usage.completion_tokens) == (1, 7)

    replay = TextBuffer()
    again = complete(model, ask("where?"), replay)  # from the cache: one piece, no call
    assert (again.cached, fake.calls) == (True, 1)
    assert replay.pieces == [first.text]
    u = model.usage
    assert (u.calls, u.cached_calls, u.completion_tokens) == (2, 1, 7)


def test_a_model_that_cannot_stream_writes_its_text_once() -> None:
    model = UsageCountingChatModel(RetryingChatModel(ScriptedChatModel(["one shot"])))
    sink = TextBuffer()
    assert complete(model, ask("q"), sink).text == "one shot"
    assert sink.pieces == ["one shot"]


def test_a_stream_broken_mid_answer_restarts_the_sink_before_the_retry(
        tmp_path: Path) -> None:
    fake = ScriptedStreamingChatModel([BrokenStream("Marie Curie was", LLMCallError("reset")),
                                       "Marie Curie was born in Warsaw."])
    model = CachedChatModel(RetryingChatModel(fake, base_delay_s=0), tmp_path / "c.sqlite")
    sink = TextBuffer()

    result = complete(model, ask("q"), sink)

    assert fake.calls == 2 and sink.restarts == 1
    assert sink.pieces[:3] == ["Marie ", "Curie ", "was"]  # the broken attempt, then void
    assert sink.text == result.text == "Marie Curie was born in Warsaw."
    assert len(model.store) == 1
    assert complete(model, ask("q")).text == result.text  # stored whole: no third call
    assert fake.calls == 2


def test_invalid_streamed_json_is_resampled_and_the_sink_starts_over() -> None:
    fake = ScriptedStreamingChatModel(['{"a": "x"}', '{"a": 3}'])
    sink = TextBuffer()
    result = complete(RetryingChatModel(fake, base_delay_s=0), ask("q", json_schema=SCHEMA),
                      sink)
    assert json.loads(result.text) == {"a": 3}
    assert (sink.restarts, sink.text) == (1, '{"a": 3}')


def test_a_stream_holds_its_concurrency_slot_until_it_ends() -> None:
    fake = ScriptedStreamingChatModel(default="a b c d e f")
    model = ConcurrencyLimitedChatModel(fake, 1)

    async def both() -> list[str]:
        sinks = [TextBuffer(), TextBuffer()]
        await asyncio.gather(*(astream(model, ask("q"), s) for s in sinks))
        return [s.text for s in sinks]

    assert asyncio.run(both()) == ["a b c d e f"] * 2
    assert fake.peak_in_flight == 1
