"""PE-Rank as a run re-ranker: sliding windows of passage-embedding tokens.

>>> rr = PERankReranker("HuggingFaceTB/SmolLM2-135M-Instruct", embedder=None,
...                     projector_path="runs/pe_rank")          # doctest: +SKIP
>>> new_run = rr.rerank(run, dataset.queries, dataset.docs)    # doctest: +SKIP
>>> rr.accounting["prompt_tokens"]                              # doctest: +SKIP

Windows (``window`` wide, moving ``stride`` towards the top, back to front) come from
:class:`rankstack.llm.sliding_window.SlidingWindowReranker`. Scores of the produced rankings
are rank-derived (``n - position``; only the order is meaningful); the scorer is
``pe-rank:<llm>``.

It is a :class:`~rankstack.rerank.base.RunReranker`: the input policies (depth/tail, missing
docs and queries with ``on_missing`` = raise / skip / keep, journal) are the protocol's, and
each call's usage is in :attr:`PERankReranker.last_report` (the same report as text listwise);
:attr:`PERankReranker.accounting` keeps PE-Rank's own counters, summed over calls until
:meth:`PERankReranker.reset_accounting`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rankstack.errors import ConfigError, InputError, require
from rankstack.llm.pe_rank.embedder import PassageEmbedder
from rankstack.llm.pe_rank.model import PERankModel
from rankstack.llm.sliding_window import SlidingWindowReranker, sliding_windows
from rankstack.records import Doc, Query, Run
from rankstack.rerank.base import OnMissing, RerankItem, RunReranker, rank_scores
from rankstack.rerank.report import RerankReport, Usage

log = logging.getLogger("rankstack.llm.pe_rank")


class PERankReranker(RunReranker):
    """Listwise re-ranking with PE-Rank: one token per passage in, one token per passage out.

    ``model_path_or_name``: the causal LM (hub name or local directory). ``embedder``: a
    :class:`PassageEmbedder`, an encoder name/path, or None for the bundled MiniLM.
    ``projector_path``: a directory written by :meth:`PERankModel.save`; None starts an
    untrained (random, seeded) projector, which exercises the mechanics and costs but ranks at
    random (``accounting["projector"] == "untrained"``). ``model`` may pass a ready
    :class:`PERankModel` instead (then ``model_path_or_name`` is only its name).
    A ``model_path_or_name`` directory in the PE-Rank code's published layout
    (``config.json`` model_type ``embed_mistral``/``embed_llama``) loads with its projector
    and the reference's settings (:mod:`rankstack.llm.pe_rank.published`).
    ``layout`` / ``normalize_hidden`` / ``bos_before_output`` configure a new projector; for a
    trained one they must match what it was trained with (None: take the model's).
    """

    def __init__(self, model_path_or_name: str, embedder: PassageEmbedder | str | None = None,
                 projector_path: str | None = None, window: int = 20, stride: int = 10, *,
                 passes: int = 1, depth: int | None = None, with_content: bool | None = None,
                 max_passage_tokens: int = 128, on_missing: OnMissing = "raise",
                 count_text_tokens: bool = False, device: str = "cpu", dtype: str | None = None,
                 threads: int | None = None, seed: int = 0, show_progress: bool = False,
                 layout: str | None = None, normalize_hidden: bool | None = None,
                 bos_before_output: bool | None = None,
                 model: PERankModel | None = None) -> None:
        super().__init__(depth=depth, on_missing=on_missing, show_progress=show_progress)
        torch = require("torch", "neural", "PE-Rank")
        if threads is not None:
            torch.set_num_threads(int(threads))
        overrides: dict[str, Any] = {}
        if with_content is not None:
            overrides["with_content"] = bool(with_content)
        fixed = {k: v for k, v in (("layout", layout), ("normalize_hidden", normalize_hidden),
                                   ("bos_before_output", bos_before_output)) if v is not None}
        if model is None and projector_path is None:
            from rankstack.llm.pe_rank.published import is_published_layout, load_published

            if is_published_layout(model_path_or_name):
                model, encoder_name = load_published(model_path_or_name, device=device,
                                                     dtype=dtype or "fp32")
                if embedder is None:
                    embedder = encoder_name
        if model is None:
            budget = max_passage_tokens
            if projector_path is not None:
                from rankstack.llm.pe_rank.model import load_projector_files

                budget = load_projector_files(projector_path)[0].max_passage_tokens
            if not isinstance(embedder, PassageEmbedder):
                embedder = PassageEmbedder(embedder, max_length=budget, device=device)
            if projector_path is None:
                overrides["max_passage_tokens"] = max_passage_tokens
                overrides["embedder"] = embedder.name
                overrides.update(fixed)
            model = PERankModel.from_pretrained(model_path_or_name, projector_path,
                                                d_emb=embedder.dim, device=device, dtype=dtype,
                                                seed=seed, **overrides)
        else:
            for k, v in overrides.items():
                setattr(model.config, k, v)
            if not isinstance(embedder, PassageEmbedder):
                embedder = PassageEmbedder(embedder, max_length=model.config.max_passage_tokens,
                                           device=device)
        for k, v in fixed.items():
            if getattr(model.config, k) != v:
                raise ConfigError(f"{k}={v!r} but the PE-Rank model was trained with "
                                  f"{k}={getattr(model.config, k)!r}")
        if embedder.max_length != model.config.max_passage_tokens:
            raise ConfigError(f"embedder max_length {embedder.max_length} != the passage budget "
                              f"the projector was trained with ({model.config.max_passage_tokens})")
        if embedder.dim != model.config.d_emb:
            raise ConfigError(f"embedder dimension {embedder.dim} != projector input "
                              f"{model.config.d_emb}")
        self.model = model.eval()
        if not model.config.stages:
            log.warning("PE-Rank projector is untrained: its rankings are arbitrary (use it to "
                        "measure cost only; train with rankstack.llm.pe_rank.train_*)")
        self.embedder = embedder
        self.name = f"pe-rank:{model_path_or_name}"
        self.score_kind = "rank"
        self.count_text_tokens = count_text_tokens
        self.windows = SlidingWindowReranker(self.rank_window, window=window, stride=stride,
                                             passes=passes)
        self.accounting: dict[str, Any] = {}
        self.reset_accounting()

    def reset_accounting(self) -> None:
        """Zero the counters. ``calls`` = windows sent to the LLM; tokens summed over calls."""
        self.accounting = {
            "prompt_tokens": 0, "generated_tokens": 0, "calls": 0, "forward_passes": 0,
            "wall_time": 0.0, "encode_time": 0.0, "queries": 0, "passages_encoded": 0,
            "embedding_cache_hits": 0, "missing_docs": 0, "repaired_windows": 0,
            "projector": "trained" if self.model.config.stages else "untrained",
        }
        if self.count_text_tokens:
            self.accounting["text_prompt_tokens"] = 0
            self.accounting["text_generated_tokens"] = 0
        self._per_query: dict[str, dict[str, float]] = {}

    def report(self):
        """The accounting as a :class:`~rankstack.rerank.report.RerankReport` (mode
        ``pe-rank``), summed since :meth:`reset_accounting`; comparable with the text listwise re-ranker's report."""
        def usage(d: dict[str, float]) -> Usage:
            return Usage(calls=int(d["calls"]), prompt_tokens=int(d["prompt_tokens"]),
                         completion_tokens=int(d["generated_tokens"]),
                         wall_s=float(d.get("wall_s", d.get("wall_time", 0.0))))

        acc = self.accounting
        cfg = self.model.config
        notes = {k: acc[k] for k in ("forward_passes", "encode_time", "passages_encoded",
                                     "embedding_cache_hits", "missing_docs", "projector")}
        notes["score_kind"] = "rank-derived (n - position), not a model score"
        if self.count_text_tokens:
            notes["text_prompt_tokens"] = acc["text_prompt_tokens"]
            notes["text_generated_tokens"] = acc["text_generated_tokens"]
        return RerankReport(
            mode="pe-rank", backend={"kind": "pe-rank", "model_id": cfg.llm,
                                     "embedder": self.embedder.name},
            template=f"pe-rank-{cfg.layout}{'-content' if cfg.with_content else ''}",
            settings={"window": self.windows.window, "stride": self.windows.stride,
                      "passes": self.windows.passes, "depth": self.depth,
                      "max_passage_tokens": cfg.max_passage_tokens,
                      "queries": acc["queries"]},
            per_query={q: usage(d) for q, d in self._per_query.items()},
            total=usage(acc), seconds=acc["wall_time"], model=self.name, score_kind="rank",
            depth=self.depth, queries=int(acc["queries"]), missing_docs=int(acc["missing_docs"]),
            repairs={"repaired_windows": acc["repaired_windows"]}, notes=notes)

    def _encode(self, passages: Sequence[Doc]):
        acc = self.accounting
        t0 = time.perf_counter()
        before = dict(self.embedder.stats)
        emb = self.embedder.encode_docs(passages)
        acc["encode_time"] += time.perf_counter() - t0
        acc["passages_encoded"] += self.embedder.stats["encoded"] - before["encoded"]
        acc["embedding_cache_hits"] += self.embedder.stats["cache_hits"] - before["cache_hits"]
        return emb

    def rank_window(self, query: str, passages: Sequence[Doc]) -> list[int]:
        """Rank one window; 0-based indices into ``passages``, best first."""
        if not passages:
            return []
        acc = self.accounting
        emb = self._encode(passages)
        contents = [d.full_text for d in passages] if self.model.config.with_content else None
        order, counts = self.model.rank_embeddings(query, emb, contents)
        acc["prompt_tokens"] += counts["prompt_tokens"]
        acc["generated_tokens"] += counts["generated_tokens"]
        acc["forward_passes"] += counts["forward_passes"]
        acc["calls"] += 1
        if self.count_text_tokens:
            texts = [d.full_text for d in passages]
            acc["text_prompt_tokens"] += len(self.model.build_text_prompt(query, texts))
            acc["text_generated_tokens"] += self.model.text_output_tokens(len(passages))
        return order

    def rerank_docs(self, query: str, docs: Sequence[Doc]) -> list[int]:
        """New order of ``docs`` (indices, best first) after the sliding windows."""
        order, stats = self.windows.rerank(query, list(docs))
        self.accounting["repaired_windows"] += stats.repaired_windows
        return order

    # -- the run re-ranker protocol (policies in rankstack.rerank.base) -------------------
    def journal_identity(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"model": self.name, "embedder": self.embedder.name,
                "projector": self.accounting["projector"], "stages": list(cfg.stages or []),
                "window": self.windows.window, "stride": self.windows.stride,
                "passes": self.windows.passes}

    def _begin(self, report: RerankReport) -> None:
        self._start = {k: self.accounting[k] for k in ("calls", "prompt_tokens",
                                                       "generated_tokens", "repaired_windows")}
        self._call_qids: set[str] = set()

    def _score_group(self, items: list[RerankItem], report: RerankReport,
                     advance: Callable[[int], None]) -> list[Sequence[float]]:
        out: list[Sequence[float]] = []
        for it in items:
            t0 = time.perf_counter()
            before = {k: self.accounting[k] for k in ("calls", "prompt_tokens",
                                                      "generated_tokens")}
            try:
                self._encode(it.docs)  # one batched pass; the windows then hit the cache
                order = self.rerank_docs(it.query, it.docs)
            finally:
                self.accounting["wall_time"] += time.perf_counter() - t0
            out.append(rank_scores(order, len(it.docs)))
            self.accounting["queries"] += 1
            self._call_qids.add(it.qid)
            self._per_query[it.qid] = {
                **{k: self.accounting[k] - v for k, v in before.items()},
                "wall_s": time.perf_counter() - t0}
            report.pairs_scored += len(it.ids)
            advance(len(it.ids))
        return out

    def _finish(self, report: RerankReport) -> None:
        acc = self.accounting
        acc["missing_docs"] += report.missing_docs
        d = {k: acc[k] - v for k, v in self._start.items()}
        full = self.report()
        report.mode, report.backend, report.template = full.mode, full.backend, full.template
        report.settings = {**full.settings, "depth": report.depth, "queries": report.queries}
        report.per_query = {q: u for q, u in full.per_query.items()
                            if q in self._call_qids}
        report.total = Usage(calls=int(d["calls"]), prompt_tokens=int(d["prompt_tokens"]),
                             completion_tokens=int(d["generated_tokens"]),
                             wall_s=sum(u.wall_s for u in report.per_query.values()))
        report.repairs = {"repaired_windows": int(d["repaired_windows"])}
        report.notes = full.notes
        report.budgets = {"max_passage_tokens": self.model.config.max_passage_tokens,
                          "raise_with": "the passage budget is the projector's (retrain it "
                                        "with a larger max_passage_tokens)"}


def window_token_counts(model: PERankModel, run: Run, queries: Mapping[str, Query | str],
                        docs: Mapping[str, Doc], *, window: int = 20, stride: int = 10,
                        depth: int | None = None) -> dict[str, float]:
    """Prompt/output tokens of one sliding-window pass over ``run``, PE-Rank vs text listwise.

    No model is run: windows are taken over each ranking's input order (the token counts do
    not depend on the order). Sums over all windows, plus per-passage averages. Docs missing
    from ``docs`` raise :class:`InputError`.
    """
    keys = ("pe_rank", "pe_rank_with_content", "text", "pe_rank_output", "text_output",
            "passages")
    tot = dict.fromkeys(keys, 0)
    windows = 0
    for qid, ranking in run.rankings.items():
        q = queries.get(qid)
        if q is None:
            raise InputError(f"query {qid!r} of run {run.name!r} has no text", field="query_id")
        qtext = q.text if isinstance(q, Query) else str(q)
        ids = ranking.doc_ids if depth is None else ranking.doc_ids[:depth]
        for d in ids:
            if d not in docs:
                raise InputError(f"doc {d!r} of query {qid!r} is not in the corpus",
                                 field="doc_id")
        for start, end in sliding_windows(len(ids), window, stride):
            counts = model.prompt_token_counts(qtext, [docs[d].full_text for d in ids[start:end]])
            for k in keys:
                tot[k] += counts[k]
            windows += 1
    out: dict[str, float] = {"windows": windows, **tot}
    if tot["passages"]:
        out["pe_rank_per_passage"] = tot["pe_rank"] / tot["passages"]
        out["text_per_passage"] = tot["text"] / tot["passages"]
        out["prompt_ratio"] = tot["text"] / max(tot["pe_rank"], 1)
    return out


def build_pe_rank(spec: Any) -> PERankReranker:
    """``family: pe-rank``: ``model`` is the causal LM; settings are the constructor's
    (``embedder``, ``projector_path``, ``window``, ``stride``, ``depth``, ...)."""
    import inspect

    if not spec.model:
        raise ConfigError("family 'pe-rank' needs a model (the causal LM: hub name or dir)")
    if spec.backend not in (None, "hf"):
        raise ConfigError(f"family 'pe-rank' runs on the hf backend, not {spec.backend!r}")
    takes = set(inspect.signature(PERankReranker.__init__).parameters) - {
        "self", "model_path_or_name", "model"}
    unknown = sorted(set(spec.settings) - takes)
    if unknown:
        raise ConfigError(f"family 'pe-rank' does not take setting(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(sorted(takes))}")
    return PERankReranker(spec.model, **spec.settings)

