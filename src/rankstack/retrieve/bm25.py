r"""BM25 first stage on top of `bm25s <https://github.com/xhluca/bm25s>`_.

Scores are bm25s's (``method="lucene"`` by default: Lucene >= 8 BM25, i.e.
``idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` with ``idf = ln(1 + (N - df + .5) / (df + .5))``,
no constant ``(k1 + 1)`` factor), computed in float32 and reported as Python floats; they are
comparable only within one Ranking. Text is lower-cased, split on ``\w\w+``, stopwords
removed, then stemmed (PyStemmer), for documents and queries alike.

Policies (documented and counted, never silent):

* A Ranking holds only documents that contain at least one query term (score > 0), as
  Lucene does, so it may be shorter than ``k``.
* A query with no tokens left after lower-casing, splitting and stopword removal, or whose
  tokens are all absent from the index vocabulary, gets an **empty Ranking** (it is kept in
  the Run). :attr:`BM25Index.last_search_stats` counts both cases and a warning is logged.
* Ties follow rankstack's one rule (score desc, then doc id asc), including at the ``k``
  cut-off. The numba backend selects by that rule directly (a cached kernel,
  :mod:`rankstack.retrieve._bm25_numba`, bit-identical float32 scores to bm25s's); the numpy
  backend takes bm25s's top-(k+1) and, when the k-th and (k+1)-th scores are equal, re-scores
  the query over the whole index so the cut picks the smallest doc ids (counted in
  ``boundary_ties_rescored``).
* Rankings are :class:`~rankstack.records.ArrayRanking`: array-backed, ScoredDoc objects are
  made only when ``.docs`` is read.

On disk an index is a directory of plain files: bm25s's own arrays and JSON
(``*.index.npy``, ``vocab.index.json``, ``params.index.json``), ``docids.txt`` (one doc id
per line, in index order) and the ``rankstack.json`` manifest (which also records the backend
the index was built with, the default when it is loaded). Saving is atomic: the files
are written to a temporary sibling directory that then replaces the target.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankstack.errors import ConfigError, InputError, require
from rankstack.io import atomic_write
from rankstack.records import ArrayRanking, Doc, Query, Ranking, Run, unique_docs

log = logging.getLogger("rankstack.retrieve.bm25")
# bm25s sets its own logger to DEBUG at import, which floods any app logging at INFO.
_bm25s_log = logging.getLogger("bm25s")

FORMAT = "rankstack-bm25"
FORMAT_VERSION = 1
MANIFEST = "rankstack.json"
DOC_IDS = "docids.txt"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's (scikit-learn's) default
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")

Backend = Literal["auto", "numba", "numpy"]


def _import_bm25s():
    import bm25s

    if _bm25s_log.level == logging.DEBUG:
        _bm25s_log.setLevel(logging.WARNING)
    return bm25s


def numba_available() -> bool:
    """True when numba imports (bm25s then uses its JIT-compiled scorer)."""
    try:
        import numba  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def _resolve_backend(backend: Backend) -> str:
    if backend == "auto":
        return "numba" if numba_available() else "numpy"
    if backend == "numba" and not numba_available():
        require("numba", "fast", "the numba BM25 backend")
    if backend not in ("numba", "numpy"):
        raise ConfigError(f"backend must be 'auto', 'numba' or 'numpy', not {backend!r}")
    return backend


def _stemmer(name: str | None):
    if name is None:
        return None
    import Stemmer as stemmer_mod  # PyStemmer, a core dependency
    try:
        return stemmer_mod.Stemmer(name)
    except KeyError:
        langs = ", ".join(sorted(stemmer_mod.algorithms()))
        raise ConfigError(f"unknown stemmer {name!r}: use one of {langs}, or None") from None


def _check_stopwords(stopwords: str | Sequence[str] | None) -> str | list[str] | None:
    from bm25s.tokenization import _infer_stopwords

    if stopwords is None or isinstance(stopwords, str):
        try:
            _infer_stopwords(stopwords)
        except ValueError:
            raise ConfigError(f"unknown stopword list {stopwords!r}: use a language code such "
                              f"as 'en', None, or a list of words") from None
        return stopwords
    words = list(stopwords)
    if not all(isinstance(w, str) for w in words):
        raise ConfigError("stopwords must be a language code, None, or a list of strings")
    return words


@dataclass
class SearchStats:
    """Counts from the last :meth:`BM25Index.search` call."""

    queries: int = 0
    empty_after_tokenizing: list[str] = field(default_factory=list)
    no_matching_term: list[str] = field(default_factory=list)
    fewer_than_k: int = 0
    boundary_ties_rescored: int = 0

    @property
    def empty_rankings(self) -> int:
        return len(self.empty_after_tokenizing) + len(self.no_matching_term)


class BM25Index:
    """A BM25 index over passages; build it, save/load it, search it with Queries.

    Use :meth:`build` or :meth:`load` rather than the constructor.
    """

    def __init__(self, retriever: Any, doc_ids: list[str], params: dict[str, Any],
                 backend: str, backend_setting: Backend = "auto") -> None:
        self._bm25 = retriever
        self.doc_ids = doc_ids
        self.params = params
        #: the backend in use ("numba" or "numpy") and the setting it was resolved from
        self.backend = backend
        self.backend_setting = backend_setting
        self.last_search_stats = SearchStats()
        self._stemmer_obj = _stemmer(params["stemmer"])
        self._id_rank_cache: np.ndarray | None = None
        self._doc_id_cache: np.ndarray | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        docs: Iterable[Doc],
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | Sequence[str] | None = "en",
        backend: Backend = "auto",
        show_progress: bool = True,
    ) -> BM25Index:
        """Index ``docs`` (title and text joined, see :attr:`Doc.full_text`).

        k1=0.9, b=0.4 are Pyserini's MS MARCO passage defaults. Repeated doc ids and ids with
        line breaks raise InputError; an empty corpus raises InputError.
        """
        bm25s = _import_bm25s()

        if not (k1 >= 0 and 0 <= b <= 1):
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        if method not in METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}: use one of {', '.join(METHODS)}")
        stopwords = _check_stopwords(stopwords)
        stem = _stemmer(stemmer)
        be = _resolve_backend(backend)

        ids: list[str] = []
        texts: list[str] = []
        for d in unique_docs(docs):
            ids.append(d.id)
            texts.append(d.full_text)
        if not ids:
            raise InputError("cannot build a BM25 index from an empty corpus")

        tokens = bm25s.tokenize(texts, lower=True, token_pattern=TOKEN_PATTERN,
                                stopwords=stopwords, stemmer=stem, show_progress=show_progress)
        retriever = bm25s.BM25(k1=k1, b=b, method=method, backend=be)
        retriever.index(tokens, show_progress=show_progress)
        params = {"k1": k1, "b": b, "method": method, "stemmer": stemmer,
                  "stopwords": stopwords, "lower": True, "token_pattern": TOKEN_PATTERN}
        log.info("indexed %d docs, %d terms", len(ids), len(retriever.vocab_dict))
        index = cls(retriever, ids, params, be, backend)
        index._id_rank()  # the search-side caches, built here while the ids are at hand
        index._doc_id_array()
        return index

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def scorer(self) -> str:
        """The scorer name put on every Ranking, e.g. ``bm25(k1=0.9,b=0.4)``."""
        p = self.params
        extra = "" if p["method"] == "lucene" else f",method={p['method']}"
        return f"bm25(k1={p['k1']:g},b={p['b']:g}{extra})"

    # ------------------------------------------------------------- save/load
    def manifest(self) -> dict[str, Any]:
        from bm25s.version import __version__ as bm25s_version

        from rankstack import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "rankstack_version": __version__,
            "bm25s_version": bm25s_version,
            "params": self.params,
            "backend": self.backend,
            "backend_setting": self.backend_setting,
            "n_docs": len(self.doc_ids),
            "doc_ids_file": DOC_IDS,
        }

    def save(self, index_dir: str | os.PathLike[str]) -> Path:
        """Write the index to ``index_dir`` atomically (replacing an older rankstack index)."""
        target = Path(index_dir)
        if target.exists():
            if not target.is_dir():
                raise ConfigError(f"{target}: exists and is not a directory")
            if any(target.iterdir()) and not (target / MANIFEST).exists():
                raise ConfigError(f"{target}: refusing to replace a non-empty directory that "
                                  f"is not a rankstack index (no {MANIFEST})")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            self._bm25.save(str(tmp), show_progress=False)
            with atomic_write(tmp / DOC_IDS) as fh:
                for d in self.doc_ids:
                    fh.write(d + "\n")
            with atomic_write(tmp / MANIFEST) as fh:  # last: its presence marks a whole index
                json.dump(self.manifest(), fh, indent=2, ensure_ascii=False)
                fh.write("\n")
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                            dir=target.parent))
                os.replace(target, old / "index")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, index_dir: str | os.PathLike[str], *, mmap: bool = True,
             backend: Backend | None = None) -> BM25Index:
        """Load an index written by :meth:`save`; ``mmap`` maps the arrays instead of reading.

        ``backend``: None = the manifest's ``backend_setting`` (what the index was built with,
        e.g. ``auto``; indexes from before it was recorded: ``auto``). The scores do not depend
        on it; the speed does.

        Raises InputError naming the directory/file for a missing, incomplete or corrupt
        index, or one written in a newer format than this rankstack reads.
        """
        bm25s = _import_bm25s()

        d = Path(index_dir)
        if not d.is_dir():
            raise InputError("BM25 index directory does not exist", path=d)
        mpath = d / MANIFEST
        if not mpath.is_file():
            raise InputError(f"no {MANIFEST}: not a rankstack BM25 index, or an interrupted "
                             f"save", path=d)
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise InputError("manifest is not valid UTF-8", path=mpath) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"corrupt manifest: {exc.msg}", path=mpath, line=exc.lineno) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} manifest", path=mpath, field="format")
        version = manifest.get("format_version")
        if not isinstance(version, int):
            raise InputError(f"format_version must be an integer, got {version!r}", path=mpath,
                             field="format_version")
        if version > FORMAT_VERSION:
            raise InputError(
                f"index format version {version} was written by a newer rankstack "
                f"({manifest.get('rankstack_version', '?')}); this one reads versions up to "
                f"{FORMAT_VERSION}: upgrade rankstack or rebuild the index",
                path=mpath, field="format_version")
        params = manifest.get("params")
        n_docs = manifest.get("n_docs")
        required = ("k1", "b", "method", "stemmer", "stopwords")
        if not isinstance(params, dict) or any(k not in params for k in required):
            raise InputError(f"params must hold {', '.join(required)}", path=mpath, field="params")
        if not isinstance(n_docs, int) or n_docs < 1:
            raise InputError(f"n_docs must be a positive integer, got {n_docs!r}", path=mpath,
                             field="n_docs")
        ids_path = d / manifest.get("doc_ids_file", DOC_IDS)
        if not ids_path.is_file():
            raise InputError("doc id file is missing", path=ids_path)
        try:
            doc_ids = ids_path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 (byte {exc.start})", path=ids_path) from None
        if doc_ids and doc_ids[-1] == "":
            doc_ids.pop()
        if len(doc_ids) != n_docs:
            raise InputError(f"has {len(doc_ids)} doc ids but the manifest says {n_docs}",
                             path=ids_path)
        if backend is None:
            backend = manifest.get("backend_setting", "auto")
            if backend not in ("auto", "numba", "numpy"):
                raise InputError(f"backend_setting must be 'auto', 'numba' or 'numpy', got "
                                 f"{backend!r}", path=mpath, field="backend_setting")
        be = _resolve_backend(backend)
        try:
            retriever = bm25s.BM25.load(str(d), mmap=mmap, load_corpus=False,
                                        show_progress=False, backend=be)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise InputError(f"corrupt or incomplete bm25s files: {type(exc).__name__}: {exc}",
                             path=d) from None
        num = retriever.scores.get("num_docs")
        n_lists = len(retriever.scores["indptr"]) - 1
        max_tid = max((t for w, t in retriever.vocab_dict.items() if w), default=-1)
        if num != n_docs or max_tid >= n_lists:
            raise InputError(f"bm25s files do not match the manifest (num_docs {num}, "
                             f"{n_lists} postings lists for term ids up to {max_tid}; "
                             f"manifest n_docs {n_docs})", path=d)
        return cls(retriever, doc_ids, dict(params), be, backend)

    # ----------------------------------------------------------------- search
    def tokenize_queries(self, texts: list[str]) -> list[list[str]]:
        """Tokens of each text exactly as documents were tokenized (lower, split, stop, stem)."""
        bm25s = _import_bm25s()

        p = self.params
        out = bm25s.tokenize(texts, lower=p.get("lower", True),
                             token_pattern=p.get("token_pattern", TOKEN_PATTERN),
                             stopwords=p["stopwords"], stemmer=self._stemmer_obj,
                             return_ids=False, show_progress=False)
        return [[t for t in toks if t] for toks in out]

    def search(
        self,
        queries: Mapping[str, Query] | Sequence[Query],
        k: int = 100,
        *,
        batch_size: int = 1024,
        n_threads: int = 1,
        show_progress: bool = True,
        name: str | None = None,
    ) -> Run:
        """Top-``k`` BM25 Rankings for every query (see the module doc for the policies).

        ``n_threads``: numba/numpy threads for retrieval (1 is often fastest on small shared
        machines). Stats of the call are in :attr:`last_search_stats`.
        """
        from tqdm.auto import tqdm

        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        qlist = list(queries.values()) if isinstance(queries, Mapping) else list(queries)
        ids = [q.id for q in qlist]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"query id {dup!r} given more than once", field="queries")

        n_docs = len(self.doc_ids)
        k_eff = min(k, n_docs)
        stats = SearchStats(queries=len(qlist))
        scorer = self.scorer
        rankings: dict[str, Ranking] = {}
        vocab = self._bm25.vocab_dict
        with tqdm(total=len(qlist), desc="BM25 search", unit="q", disable=not show_progress) as bar:
            for start in range(0, len(qlist), batch_size):
                batch = qlist[start:start + batch_size]
                toks = self.tokenize_queries([q.text for q in batch])
                todo_q: list[str] = []
                todo_t: list[list[int]] = []
                for q, t in zip(batch, toks, strict=True):
                    if not t:
                        stats.empty_after_tokenizing.append(q.id)
                        continue
                    tids = [vocab[w] for w in t if w in vocab]
                    if not tids:
                        stats.no_matching_term.append(q.id)
                        continue
                    todo_q.append(q.id)
                    todo_t.append(tids)
                if todo_q:
                    idx, sc, counts = self._top_k(todo_t, k_eff, n_threads, stats)
                    ids = self._doc_id_array()[idx]  # (n, k) object array: no new str objects
                    stats.fewer_than_k += int((counts < k_eff).sum())
                    for i, (qid, n) in enumerate(zip(todo_q, counts.tolist(), strict=True)):
                        rankings[qid] = ArrayRanking.from_arrays(qid, ids[i, :n], sc[i, :n],
                                                                 scorer)
                bar.update(len(batch))
        # Empty rankings keep their place in the query order.
        run = Run({}, name or "bm25")
        for q in qlist:
            run.add(rankings[q.id] if q.id in rankings else Ranking(q.id, [], scorer))
        self.last_search_stats = stats
        if stats.empty_after_tokenizing:
            log.warning("%d query(ies) have no tokens after stopword removal; they get empty "
                        "rankings: %s", len(stats.empty_after_tokenizing),
                        ", ".join(stats.empty_after_tokenizing[:10]))
        if stats.no_matching_term:
            log.warning("%d query(ies) match no indexed term; they get empty rankings: %s",
                        len(stats.no_matching_term), ", ".join(stats.no_matching_term[:10]))
        if stats.fewer_than_k:
            log.info("%d query(ies) matched fewer than k=%d docs", stats.fewer_than_k, k_eff)
        return run

    def _id_rank(self) -> np.ndarray:
        """Position of each doc (by index) in plain string order of doc ids; cached."""
        if self._id_rank_cache is None:
            order = sorted(range(len(self.doc_ids)), key=self.doc_ids.__getitem__)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            self._id_rank_cache = rank
        return self._id_rank_cache

    def _doc_id_array(self) -> np.ndarray:
        """The doc ids as a numpy object array (indexing it reuses the str objects); cached."""
        if self._doc_id_cache is None:
            arr = np.empty(len(self.doc_ids), dtype=object)
            arr[:] = self.doc_ids
            self._doc_id_cache = arr
        return self._doc_id_cache

    def _top_k(self, tids: list[list[int]], k: int, n_threads: int, stats: SearchStats,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(doc_index[n, k], score[n, k], count[n])`` by the rankstack rule, per query.

        numba: one cached kernel (:mod:`rankstack.retrieve._bm25_numba`) does scoring, the
        cut and the tie-break. numpy: bm25s's top-(k+1), then a vectorised tie-break; a row
        whose k-th and (k+1)-th scores tie is re-scored over the whole index.
        """
        if self.backend == "numba":
            from rankstack.retrieve import _bm25_numba

            return _bm25_numba.run(self._bm25, tids, k, self._id_rank(), n_threads=n_threads)
        n_docs = len(self.doc_ids)
        k_fetch = min(k + 1, n_docs)  # one extra to see ties at the cut-off
        res = self._bm25.retrieve(tids, k=k_fetch, sorted=True, show_progress=False,
                                  n_threads=n_threads)
        idx = np.asarray(res.documents, dtype=np.int64).reshape(len(tids), k_fetch)
        sc = np.asarray(res.scores).reshape(len(tids), k_fetch)
        out_i = np.zeros((len(tids), k), dtype=np.int64)
        out_s = np.zeros((len(tids), k), dtype=sc.dtype)
        counts = np.zeros(len(tids), dtype=np.int64)
        tie = (sc[:, k] > 0) & (sc[:, k] == sc[:, k - 1]) if k_fetch > k \
            else np.zeros(len(tids), dtype=bool)
        rank = self._id_rank()
        plain = np.nonzero(~tie)[0]
        if len(plain):
            pi, ps = idx[plain, :k], sc[plain, :k]
            ps_key = np.where(ps > 0, -ps, np.inf)  # non-matching docs sort last
            order = np.lexsort((rank[pi], ps_key), axis=-1)
            pi = np.take_along_axis(pi, order, axis=1)
            ps = np.take_along_axis(ps, order, axis=1)
            out_i[plain], out_s[plain] = pi, ps
            counts[plain] = (ps > 0).sum(axis=1)
        for row in np.nonzero(tie)[0].tolist():
            # A tie straddles the cut-off: bm25s picked arbitrary members of it. Re-score
            # the whole index and cut by the rankstack rule (score desc, doc id asc).
            stats.boundary_ties_rescored += 1
            full = np.asarray(self._bm25.get_scores_from_ids(tids[row]))
            cand = np.nonzero(full >= sc[row, k - 1])[0]
            order = np.lexsort((rank[cand], -full[cand]))[:k]
            out_i[row], out_s[row] = cand[order], full[cand[order]]
            counts[row] = k
        return out_i, out_s, counts
