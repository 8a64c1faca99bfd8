"""Server limits over real HTTP (uvicorn on 127.0.0.1): a chunked body over the limit gets 413
without being read in full; a client that disconnects has its work cancelled (the next small
request is scored right after the chunk in flight); the per-request deadline; /stats counts."""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from rankstack.serve.app import ServiceSettings, create_app  # noqa: E402
from rankstack.serve.server import BackgroundServer  # noqa: E402


@pytest.fixture(scope="module")
def scorer(tiny_bert_dir):
    pytest.importorskip("torch")
    from rankstack.rerank.reranker import Reranker

    r = Reranker.from_pretrained(str(tiny_bert_dir), family="cross-encoder", dtype="fp32",
                                 threads=1, show_progress=False)
    yield r.scorer
    r.close()


class GatedScorer:
    """The real scorer's score_pairs, recording each call; the first call waits for ``release``
    (so the test decides when the model is busy, not the clock)."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, qs, ps):
        self.calls.append(list(qs))
        if len(self.calls) == 1:
            self.started.set()
            assert self.release.wait(120), "the test never released the scorer"
        return self.scorer.score_pairs(qs, ps)


def _http_head(port: int, body_len: int | None, path: str = "/rerank") -> bytes:
    framing = (f"Content-Length: {body_len}" if body_len is not None
               else "Transfer-Encoding: chunked")
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()


def _stats(url: str) -> dict:
    return httpx.get(url + "/stats", timeout=30).json()


def _wait_for(cond, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_chunked_body_over_the_limit_gets_413_without_being_read(scorer):
    limit = 1024 * 1024
    app = create_app(scorer, settings=ServiceSettings(max_body_bytes=limit))
    total = 100 * 1024 * 1024
    chunk = b"x" * (64 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with BackgroundServer(app) as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=30)
        start = b'{"query": "q", "passages": ["'
        sock.sendall(_http_head(srv.port, None) + f"{len(start):x}\r\n".encode() + start
                     + b"\r\n")
        sent = 0
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered: stop sending
                sock.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: the rest was never read
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except ConnectionResetError:
            pass
        sock.close()
        stats = _stats(srv.url)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"max_body_bytes" in reply and b"connection: close" in reply.lower()
    assert sent < 32 * 1024 * 1024  # stopped far short of the 100 MB
    assert stats["requests"]["body_too_large"] == 1


def test_disconnected_client_work_is_cancelled(scorer):
    gate = GatedScorer(scorer)
    s = ServiceSettings(max_passages=1000, max_batch_pairs=50, max_wait_ms=0)
    app = create_app(scorer, settings=s, score_fn=gate)
    big = json.dumps({"query": "big", "passages": [f"passage {i}" for i in range(1000)]}).encode()
    with BackgroundServer(app) as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=30)
        sock.sendall(_http_head(srv.port, len(big)) + big)
        assert gate.started.wait(60)  # the first 50-pair chunk is inside the model
        sock.close()  # the client goes away
        _wait_for(lambda: _stats(srv.url)["requests"]["disconnected"] == 1,
                  "the disconnect to be noticed")
        gate.release.set()
        r = httpx.post(srv.url + "/rerank", timeout=60,
                       json={"query": "small", "passages": ["a cat", "a dog"]})
        assert r.status_code == 200, r.text
        stats = _stats(srv.url)
    # only the chunk already in the model was scored; the other 950 pairs never were
    big_pairs = sum(len(c) for c in gate.calls if c[0] == "big")
    assert big_pairs == 50
    assert [c for c in gate.calls if c[0] == "small"] == [["small", "small"]]
    b = stats["batching"]
    assert b["cancelled_requests"] == 1 and b["cancelled_pairs"] == 950
    assert b["pairs"] == 52  # the chunk in flight when the client left was scored, then dropped
    want = scorer.score_pairs(["small"] * 2, ["a cat", "a dog"]).tolist()
    got = {h["index"]: h["score"] for h in r.json()["results"]}
    assert [got[0], got[1]] == pytest.approx(want, abs=1e-5)


def test_deadline_cancels_and_answers_504(scorer):
    gate = GatedScorer(scorer)
    s = ServiceSettings(request_timeout_s=0.5, max_wait_ms=0)
    app = create_app(scorer, settings=s, score_fn=gate)
    with BackgroundServer(app) as srv:
        try:
            r = httpx.post(srv.url + "/rerank", timeout=60,
                           json={"query": "q", "passages": ["a", "b"]})
        finally:
            gate.release.set()
        assert r.status_code == 504 and "request_timeout_s" in r.json()["detail"]
        ok = httpx.post(srv.url + "/rerank", timeout=60,
                        json={"query": "q2", "passages": ["a", "b"]})
        assert ok.status_code == 200
        stats = _stats(srv.url)
    assert stats["requests"]["deadline_exceeded"] == 1
    assert stats["batching"]["cancelled_requests"] == 1
    assert stats["settings"]["request_timeout_s"] == 0.5


def test_content_length_over_the_limit_is_refused_before_the_body(scorer):
    app = create_app(scorer, settings=ServiceSettings(max_body_bytes=1000))
    with BackgroundServer(app) as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=30)
        sock.sendall(_http_head(srv.port, 10**9))  # announces 1 GB, sends none of it
        reply = b""
        while data := sock.recv(65536):  # the server closes after its answer
            reply += data
        sock.close()
    assert reply.startswith(b"HTTP/1.1 413") and b"1000000000 bytes" in reply


def test_bad_deadline_setting():
    from rankstack.errors import ConfigError

    with pytest.raises(ConfigError, match="request_timeout_s"):
        ServiceSettings(request_timeout_s=0)


def test_batcher_chunks_large_requests_and_keeps_whole_ones_whole():
    import asyncio

    import numpy as np

    from rankstack.serve.batching import MicroBatcher

    calls: list[int] = []

    def score(qs, ps):
        calls.append(len(qs))
        return np.array([float(p) for p in ps], dtype=np.float32)

    async def main(split: bool):
        b = MicroBatcher(score, max_batch_pairs=4, max_wait_ms=0, split_requests=split)
        await b.start()
        try:
            out = await b.score(["q"] * 10, [str(i) for i in range(10)])
        finally:
            await b.stop()
        return out, b.stats

    out, stats = asyncio.run(main(True))
    assert out.tolist() == list(range(10)) and calls == [4, 4, 2]
    assert stats.requests == 1 and stats.pairs == 10 and stats.batches == 3
    calls.clear()
    out, stats = asyncio.run(main(False))
    assert out.tolist() == list(range(10)) and calls == [10]


def test_batcher_with_two_model_copies_scores_two_batches_at_once():
    import asyncio

    import numpy as np

    from rankstack.serve.batching import MicroBatcher

    both_busy = threading.Barrier(2, timeout=60)  # passes only if both copies run together
    who: list[tuple[int, str]] = []

    def make(w: int):
        def score(qs, ps):
            who.append((w, qs[0]))
            if len(who) <= 2:
                both_busy.wait()
            return np.array([len(p) + 100 * w for p in ps], dtype=np.float32)
        return score

    async def main():
        b = MicroBatcher([make(0), make(1)], max_batch_pairs=2, max_wait_ms=0)
        await b.start()
        try:
            res = await asyncio.gather(b.score(["a", "a"], ["x", "yy"]),
                                       b.score(["b", "b"], ["zzz", "w"]))
        finally:
            await b.stop()
        return res, b.stats

    res, stats = asyncio.run(main())
    assert sorted(w for w, _ in who) == [0, 1]  # each copy took one batch
    by_query = {q: w for w, q in who}
    assert res[0].tolist() == [1 + 100 * by_query["a"], 2 + 100 * by_query["a"]]
    assert res[1].tolist() == [3 + 100 * by_query["b"], 1 + 100 * by_query["b"]]
    assert stats.batches == 2 and stats.requests == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_an_ordinary_client_reads_the_413_for_a_body_just_over_the_limit(scorer, chunked):
    """httpx writes its whole body before reading: the server must drain, not reset, it."""
    app = create_app(scorer, settings=ServiceSettings(max_body_bytes=64 * 1024))
    body = b'{"query": "q", "passages": ["' + b"x" * (96 * 1024) + b'"]}'

    def gen():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        for _ in range(20):
            r = c.post("/rerank", content=gen() if chunked else body,
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
        assert c.post("/rerank", json={"query": "q", "passages": ["a"]}).status_code == 200
        assert _stats(srv.url)["requests"]["body_too_large"] == 20
