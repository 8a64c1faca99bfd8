"""The HTTP re-ranking service (FastAPI): ``/rerank``, ``/search``, ``/health``, ``/stats``.

* ``POST /rerank`` ``{"query": str, "passages": [str] | [{"id", "text"}]}`` or
  ``{"query": str, "ids": [str]}`` (ids resolved in the loaded corpus; passage text is
  :attr:`Doc.full_text`). Returns every passage with its score and rank in rankstack order
  (score desc, then id asc). Plain-string passages get the ids ``"0", "1", ...`` (their
  positions), so equal scores are ordered by that id *as a string*.
* ``POST /search`` ``{"query": str, "k": int}`` over the loaded index (BM25 or dense); only
  present when the server was started with an index.
* ``GET /health`` (never needs a token), ``GET /stats`` (micro-batching counters, and
  ``requests``: bodies refused, clients that disconnected, deadlines exceeded),
  ``GET /openapi.json``.

Scores are the scorer's raw output (``score_kind`` in every response says what they are).
Bad requests get 4xx with a ``detail`` message: 422 for schema/limit violations (with one
``errors`` entry per problem, locating the field), 413 for a body over ``max_body_bytes``,
400 for ids without a loaded corpus, 401 for a missing token, 403 for a wrong one, 504 past the
per-request deadline. The body limit, the deadline and cancellation on client disconnect are
:class:`rankstack.serve.server.RequestLimits`.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the annotations of the
# request models defined inside create_app at runtime.
import asyncio
import hmac
import threading
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Protocol

from rankstack.errors import ConfigError, require
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc
from rankstack.serve.batching import MicroBatcher, ScoreFn
from rankstack.serve.server import RequestLimits, RequestStats


class Searcher(Protocol):
    """What ``/search`` needs of an index (BM25Index and DenseIndex both fit)."""

    def search(self, queries: Sequence[Query], k: int = ..., *,
               show_progress: bool = ...) -> Run: ...


@dataclass
class ServiceSettings:
    """Limits and batching of the service (all settable from ``rankstack serve``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: passages (or ids) per /rerank request
    max_passages: int = 1000
    #: characters per passage text
    max_text_chars: int = 20_000
    #: characters per query
    max_query_chars: int = 2_000
    #: characters per passage id
    max_id_chars: int = 256
    #: largest k of /search
    max_k: int = 1000
    #: request bodies over this size get 413 before parsing (chunked bodies too)
    max_body_bytes: int = 16 * 1024 * 1024
    #: seconds a request may take, body to response (None = no limit); past it: 504
    request_timeout_s: float | None = 300.0
    #: micro-batching: pairs per model call, wait to gather, requests per batch (1 = off)
    max_batch_pairs: int = 256
    max_wait_ms: float = 5.0
    max_batch_requests: int | None = None
    #: bearer token; None = no authentication
    token: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_passages", "max_text_chars", "max_query_chars", "max_id_chars",
                     "max_k", "max_body_bytes", "max_batch_pairs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve setting {name} must be >= 1, got {getattr(self, name)}")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise ConfigError(f"serve setting request_timeout_s must be > 0 (or None), got "
                              f"{self.request_timeout_s}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve token must not be empty")

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["token"] = self.token is not None
        return d


def _utf8(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (unpaired surrogate)") from None
    return v


def _error_message(err: Mapping[str, Any]) -> dict[str, str]:
    # union branch tags (e.g. "function-after[...]") are noise to a client
    loc = ".".join(str(x) for x in err.get("loc", ()) if "[" not in str(x))
    return {"loc": loc, "msg": str(err.get("msg", "invalid value"))}


def create_app(
    scorer: Any,
    *,
    settings: ServiceSettings | None = None,
    corpus: Mapping[str, Doc] | None = None,
    index: Searcher | None = None,
    index_name: str | None = None,
    score_fn: ScoreFn | Sequence[ScoreFn] | None = None,
):
    """Build the FastAPI app around a :class:`~rankstack.rerank.base.Scorer`, or any
    :class:`~rankstack.rerank.base.RunReranker` (listwise LLM, PE-Rank, BM25, fusion).

    A pointwise re-ranker is served through its scorer, micro-batched. Other re-rankers
    re-rank each request's passages as one query (in request order as the candidate order,
    all of them: ``depth`` is the request's length), one request at a time.
    ``score_fn`` overrides ``scorer.score_pairs`` (e.g. a Reranker's scoring function);
    ``scorer`` still names the model (``.name``) and the score kind (``.score_kind``).
    A list of functions (one per model copy) scores that many batches at once.
    """
    require("fastapi", extra="serve", purpose="rankstack serve")
    require("pydantic", extra="serve", purpose="rankstack serve")
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import (
        AfterValidator,
        BaseModel,
        ConfigDict,
        Discriminator,
        Field,
        Tag,
        model_validator,
    )

    s = settings or ServiceSettings()
    run_reranker = None
    if score_fn is None and not hasattr(scorer, "score_pairs"):
        if hasattr(scorer, "scorer"):  # a pointwise re-ranker: serve its scorer, batched
            scorer = scorer.scorer
        elif hasattr(scorer, "rerank"):
            run_reranker = scorer
        else:
            raise ConfigError(f"cannot serve {type(scorer).__name__}: not a Scorer or a "
                              f"RunReranker")
    model_name = str(getattr(scorer, "name", type(scorer).__name__))
    score_kind = str(getattr(scorer, "score_kind", "unknown"))
    fn: ScoreFn | Sequence[ScoreFn] = score_fn or (
        scorer.score_pairs if run_reranker is None else _unbatched(run_reranker))
    batcher = MicroBatcher(fn, max_batch_pairs=s.max_batch_pairs, max_wait_ms=s.max_wait_ms,
                           max_batch_requests=(1 if run_reranker is not None
                                               else s.max_batch_requests),
                           split_requests=run_reranker is None)

    Text = Annotated[str, Field(max_length=s.max_text_chars), AfterValidator(_utf8)]
    QueryText = Annotated[str, Field(min_length=1, max_length=s.max_query_chars),
                          AfterValidator(_utf8)]
    DocId = Annotated[str, Field(min_length=1, max_length=s.max_id_chars), AfterValidator(_utf8)]

    class PassageIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: DocId
        text: Text

    Passage = Annotated[
        Annotated[Text, Tag("text")] | Annotated[PassageIn, Tag("object")],
        Discriminator(lambda v: "text" if isinstance(v, str) else "object"),
    ]

    class RerankRequest(BaseModel):
        """Give either ``passages`` (texts, or objects with id and text) or corpus ``ids``."""

        model_config = ConfigDict(extra="forbid")
        query: QueryText
        passages: list[Passage] | None = Field(
            None, min_length=1, max_length=s.max_passages,
            description="passage texts, or objects {id, text} (not mixed)")
        ids: list[DocId] | None = Field(None, min_length=1, max_length=s.max_passages)
        top_k: int | None = Field(None, ge=1, le=s.max_passages,
                                  description="return only the best top_k passages")

        @model_validator(mode="after")
        def _one_source(self):
            if (self.passages is None) == (self.ids is None):
                raise ValueError("give exactly one of 'passages' or 'ids'")
            if self.passages is not None and len({type(p) for p in self.passages}) > 1:
                raise ValueError("'passages' mixes strings and {id, text} objects")
            if self.passages is not None and isinstance(self.passages[0], PassageIn):
                seen: set[str] = set()
                for p in self.passages:
                    if p.id in seen:
                        raise ValueError(f"duplicate passage id {p.id!r}")
                    seen.add(p.id)
            if self.ids is not None and len(set(self.ids)) != len(self.ids):
                raise ValueError("duplicate ids")
            return self

    class RerankHit(BaseModel):
        index: int = Field(description="position of the passage in the request")
        id: str
        score: float
        rank: int

    class RerankResponse(BaseModel):
        model: str
        score_kind: str
        results: list[RerankHit]

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: QueryText
        k: int = Field(10, ge=1, le=s.max_k)

    class SearchHit(BaseModel):
        id: str
        score: float
        rank: int
        text: str | None = None

    class SearchResponse(BaseModel):
        index: str
        hits: list[SearchHit]

    class Health(BaseModel):
        status: str
        model: str
        score_kind: str
        index: str | None
        corpus_docs: int

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="rankstack", version=_version(), lifespan=lifespan,
                  description="Re-rank passages for a query; search a loaded index.")
    app.state.batcher = batcher
    app.state.settings = s
    bearer = HTTPBearer(auto_error=False, description="set when the server has a token")

    def auth(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if s.token is None:
            return
        if cred is None or cred.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(cred.credentials.encode("utf-8", "replace"),
                                   s.token.encode("utf-8")):
            raise HTTPException(403, "invalid token")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [_error_message(e) for e in exc.errors()]
        head = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse({"detail": f"invalid request: {head}{more}", "errors": errors},
                            status_code=422)

    request_stats = RequestStats()
    app.state.request_stats = request_stats
    app.add_middleware(RequestLimits, max_body_bytes=s.max_body_bytes,
                       deadline_s=s.request_timeout_s, stats=request_stats)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", model=model_name, score_kind=score_kind, index=index_name,
                      corpus_docs=len(corpus) if corpus is not None else 0)

    @app.get("/stats", dependencies=[Depends(auth)])
    async def stats() -> dict[str, Any]:
        return {"batching": batcher.stats.as_dict(), "requests": request_stats.as_dict(),
                "settings": s.public()}

    @app.post("/rerank", response_model=RerankResponse, dependencies=[Depends(auth)],
              responses={400: {"description": "ids given but no corpus loaded"},
                         401: {"description": "missing token"},
                         403: {"description": "wrong token"},
                         413: {"description": "body too large"}})
    async def rerank(req: RerankRequest) -> RerankResponse:
        if req.ids is not None:
            if corpus is None:
                raise HTTPException(400, "this server has no corpus loaded: send passage "
                                         "texts in 'passages' instead of 'ids'")
            missing = [i for i in req.ids if i not in corpus]
            if missing:
                raise HTTPException(422, f"{len(missing)} id(s) not in the corpus, e.g. "
                                         f"{', '.join(repr(m) for m in missing[:5])}")
            ids = list(req.ids)
            texts = [corpus[i].full_text for i in ids]
        else:
            assert req.passages is not None
            if isinstance(req.passages[0], str):
                texts = list(req.passages)  # type: ignore[arg-type]
                ids = [str(i) for i in range(len(texts))]
            else:
                ids = [p.id for p in req.passages]  # type: ignore[union-attr]
                texts = [p.text for p in req.passages]  # type: ignore[union-attr]
        scores = await batcher.score([req.query] * len(texts), texts)
        ranking = Ranking("request", [ScoredDoc(i, float(x)) for i, x in zip(ids, scores, strict=True)],
                          model_name)
        pos = {i: n for n, i in enumerate(ids)}
        docs = ranking.docs[: req.top_k] if req.top_k else ranking.docs
        return RerankResponse(model=model_name, score_kind=score_kind, results=[
            RerankHit(index=pos[d.doc_id], id=d.doc_id, score=d.score, rank=r)
            for r, d in enumerate(docs, 1)])

    if index is not None:
        lock = threading.Lock()  # index objects are not assumed to be thread-safe

        def _search(text: str, k: int) -> Ranking:
            with lock:
                run = index.search([Query("request", text)], k, show_progress=False)
            return run["request"] if "request" in run else Ranking("request", [], "")

        @app.post("/search", response_model=SearchResponse, dependencies=[Depends(auth)],
                  responses={401: {"description": "missing token"},
                             403: {"description": "wrong token"},
                             413: {"description": "body too large"}})
        async def search(req: SearchRequest) -> SearchResponse:
            ranking = await asyncio.to_thread(_search, req.query, req.k)
            hits = []
            for r, d in enumerate(ranking.docs, 1):
                doc = corpus.get(d.doc_id) if corpus is not None else None
                hits.append(SearchHit(id=d.doc_id, score=d.score, rank=r,
                                      text=doc.full_text if doc is not None else None))
            return SearchResponse(index=index_name or "index", hits=hits)

    return app


def _unbatched(reranker: Any) -> ScoreFn:
    """``score_pairs`` over a RunReranker: one request (the batcher gets
    ``max_batch_requests=1``) re-ranked as one query, under a lock."""
    lock = threading.Lock()

    def score(queries: Sequence[str], passages: Sequence[str]) -> Any:
        import numpy as np

        if len(set(queries)) > 1:
            raise RuntimeError("a RunReranker batch must hold one request")
        ids = [str(i) for i in range(len(passages))]
        docs = {i: Doc(i, t) for i, t in zip(ids, passages, strict=True)}
        run = Run({"request": Ranking.from_order("request", ids, "request")}, "request")
        with lock:
            ranked = reranker.rerank(run, {"request": queries[0]}, docs, depth=None)
        sc = ranked["request"].scores()
        return np.asarray([sc[i] for i in ids], dtype=np.float32)

    return score


def _version() -> str:
    from rankstack import __version__

    return __version__
