"""Dense first stage: encode a corpus with a bi-encoder, store plain files, search exactly or
approximately.

On disk a dense index is a directory of plain files:

* ``embeddings.npy``: a float32 ``(n_docs, dim)`` matrix (memory-mappable with ``np.load``),
* ``docids.txt``: one doc id per line, row order,
* ``rankstack.json``: the manifest (format, model id, pooling, normalisation, dim, n_docs,
  rankstack version). It is written last, so its presence marks a complete index.

Building is resumable: rows are encoded into ``<dir>.partial/`` chunk by chunk and a progress
file records how many rows are done (for this exact corpus and encoder); an interrupted build
restarts from there. The finished directory replaces the target atomically.

Similarity is the inner product of the stored vectors and the query vector; with a
normalising encoder (``normalized: true`` in the manifest) it is the cosine. Scores are
reported as that similarity (``score_kind`` ``"dot"`` or ``"cosine"``).

Search modes: ``exact`` (faiss ``IndexFlatIP``, or numpy when faiss is not installed) and
``hnsw`` (faiss ``IndexHNSWFlat`` with inner product; ``hnsw_m``, ``ef_construction``,
``ef_search``), built in memory when the index is opened. Exact search follows the tie-break
rule at the ``k`` cut (score desc, doc id asc): when the k-th and (k+1)-th scores are equal the
query is re-scored over all docs with numpy (counted in :attr:`DenseIndex.last_search_stats`).
HNSW is approximate and makes no such promise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from rankstack.config import config_hash
from rankstack.errors import ConfigError, InputError, require
from rankstack.io import atomic_write
from rankstack.records import Doc, Query, Ranking, Run, ScoredDoc, unique_docs

log = logging.getLogger("rankstack.retrieve.dense")

FORMAT = "rankstack-dense"
FORMAT_VERSION = 1
MANIFEST = "rankstack.json"
EMBEDDINGS = "embeddings.npy"
DOC_IDS = "docids.txt"
PROGRESS = "progress.json"

Mode = Literal["exact", "hnsw"]


class Encoder(Protocol):
    """What dense retrieval needs of a bi-encoder (rankstack's bi-encoder scorer fits)."""

    name: str

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def encoder_info(encoder: Encoder) -> dict[str, Any]:
    """What the manifest records about how the encoder embeds text (None = not known).

    ``normalized`` is true when the encoder L2-normalizes its vectors (rankstack's
    bi-encoder does for ``similarity="cosine"``), so inner product = cosine.
    """
    def attr(*names: str) -> Any:
        for n in names:
            v = getattr(encoder, n, None)
            if v is not None:
                return v if isinstance(v, bool | int | float | str) else str(v)
        return None

    similarity = attr("similarity")
    normalized = attr("normalize", "normalized")
    if normalized is None and similarity is not None:
        normalized = similarity == "cosine"
    suffix = getattr(encoder, "suffix_ids", None)
    runtime = getattr(encoder, "runtime", None)
    return {
        "model": str(attr("name") or type(encoder).__name__),
        "family": attr("family"),
        "pooling": attr("pooling"),
        "similarity_setting": similarity,
        "normalized": normalized,
        "query_prefix": attr("query_prefix"),
        "passage_prefix": attr("passage_prefix"),
        "append_eos": bool(suffix) if suffix is not None else None,
        # the compute dtype the passages were encoded with; queries default to the same
        "encode_dtype": getattr(runtime, "dtype", None),
    }


def _faiss(purpose: str, required: bool):
    try:
        return require("faiss", extra="dense", purpose=purpose, package="faiss-cpu")
    except ImportError:
        if required:
            raise
        return None


def _as_matrix(x: Any, n: int, what: str) -> np.ndarray:
    m = np.asarray(x, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != n:
        raise InputError(f"encoder returned shape {m.shape} for {n} {what}; expected (n, dim)")
    if not np.isfinite(m).all():
        raise InputError(f"encoder returned non-finite values for {what}")
    return np.ascontiguousarray(m)


def build_dense_index(
    docs: Iterable[Doc] | Mapping[str, Doc],
    encoder: Encoder,
    index_dir: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    show_progress: bool = True,
) -> Path:
    """Encode ``docs`` (text: :attr:`Doc.full_text`) into a dense index at ``index_dir``.

    ``batch_size`` passages are encoded and written per step (the encoder batches inside).
    Resumes an interrupted build of the same corpus with the same encoder. Repeated doc ids,
    ids with line breaks and an empty corpus raise InputError.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    items = list(docs.values()) if isinstance(docs, Mapping) else list(docs)
    ids = [d.id for d in unique_docs(items)]
    if not ids:
        raise InputError("cannot build a dense index from an empty corpus")
    target = Path(index_dir)
    if target.exists() and (not target.is_dir() or
                            (any(target.iterdir()) and not (target / MANIFEST).exists())):
        raise ConfigError(f"{target}: refusing to replace something that is not a rankstack "
                          f"index (no {MANIFEST})")
    info = encoder_info(encoder)
    # identity of this build: the corpus (ids and text) and the encoder
    import hashlib

    h = hashlib.sha256()
    for d in items:
        h.update(d.id.encode() + b"\0" + d.full_text.encode("utf-8", "replace") + b"\0")
    build_key = config_hash({"corpus": h.hexdigest(), "encoder": info})

    work = target.parent / f".{target.name}.partial"
    progress_path = work / PROGRESS
    done, emb = 0, None
    if progress_path.is_file():
        try:
            prog = json.loads(progress_path.read_text())
            if prog.get("build_key") == build_key:
                done = int(prog["rows_done"])
                emb = np.lib.format.open_memmap(work / EMBEDDINGS, mode="r+")
                log.info("resuming dense index build at row %d of %d", done, len(ids))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: cannot resume (%s); starting over", work, exc)
            done, emb = 0, None
    if emb is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)

    bar = tqdm(total=len(ids), initial=done, desc="encoding passages", unit="doc",
               disable=not show_progress)
    start = done
    while start < len(ids):
        chunk = items[start:start + batch_size]
        vecs = _as_matrix(encoder.encode_passages([d.full_text for d in chunk]), len(chunk),
                          "passages")
        if emb is None:
            emb = np.lib.format.open_memmap(work / EMBEDDINGS, mode="w+", dtype=np.float32,
                                            shape=(len(ids), vecs.shape[1]))
        elif vecs.shape[1] != emb.shape[1]:
            raise InputError(f"encoder returned dim {vecs.shape[1]}, earlier rows have "
                             f"{emb.shape[1]}")
        emb[start:start + len(chunk)] = vecs
        emb.flush()
        start += len(chunk)
        with atomic_write(progress_path) as fh:
            json.dump({"build_key": build_key, "rows_done": start}, fh)
        bar.update(len(chunk))
    bar.close()
    assert emb is not None
    dim = int(emb.shape[1])
    del emb
    with atomic_write(work / DOC_IDS) as fh:
        for d in ids:
            fh.write(d + "\n")
    from rankstack import __version__

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rankstack_version": __version__,
        **info, "dim": dim, "n_docs": len(ids), "dtype": "float32",
        "similarity": "cosine" if info.get("normalized") else "dot",
        "embeddings_file": EMBEDDINGS, "doc_ids_file": DOC_IDS, "build_key": build_key,
    }
    os.unlink(progress_path)
    with atomic_write(work / MANIFEST) as fh:  # last: marks a complete index
        json.dump(manifest, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "index")
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, target)
    log.info("dense index: %d docs x %d dims -> %s", len(ids), dim, target)
    return target


@dataclass
class DenseSearchStats:
    queries: int = 0
    #: queries re-scored over all docs because of a tie at the k cut (exact mode)
    boundary_ties_rescored: int = 0
    #: rankings shorter than k (the index has fewer than k docs, or HNSW returned fewer)
    fewer_than_k: int = 0


class DenseIndex:
    """An opened dense index. Use :meth:`load` (or :func:`build_dense_index` then load)."""

    def __init__(self, embeddings: np.ndarray, doc_ids: list[str], manifest: dict[str, Any],
                 encoder: Encoder | None, *, mode: Mode = "exact", hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128,
                 use_faiss: bool | None = None) -> None:
        if mode not in ("exact", "hnsw"):
            raise ConfigError(f"unknown dense search mode {mode!r}: use exact or hnsw")
        for name, v in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction),
                        ("ef_search", ef_search)):
            if v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if mode == "hnsw" and use_faiss is False:
            raise ConfigError("hnsw search needs faiss (use_faiss=False allows only exact)")
        self.embeddings = embeddings
        self.doc_ids = doc_ids
        self.manifest = manifest
        self.encoder = encoder
        self.mode = mode
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.last_search_stats = DenseSearchStats()
        faiss = _faiss("dense search", required=mode == "hnsw" or bool(use_faiss))
        self._faiss = faiss if use_faiss is not False else None
        self._index: Any = None

    # -------------------------------------------------------------------- open
    @classmethod
    def load(cls, index_dir: str | os.PathLike[str], encoder: Encoder | None = None, *,
             mmap: bool = True, **search_settings: Any) -> DenseIndex:
        """Open an index written by :func:`build_dense_index`.

        ``encoder`` encodes queries; without one the index can only :meth:`search_vectors`
        (see :func:`load_encoder` to open the manifest's model). ``search_settings``:
        ``mode`` (exact|hnsw), ``hnsw_m``, ``ef_construction``, ``ef_search``, ``use_faiss``.
        """
        d = Path(index_dir)
        if not d.is_dir():
            raise InputError("dense index directory does not exist", path=d)
        mpath = d / MANIFEST
        if not mpath.is_file():
            raise InputError(f"no {MANIFEST}: not a rankstack index, or an interrupted build",
                             path=d)
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"corrupt manifest: {exc}", path=mpath) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise InputError(f"not a dense index (format {fmt!r}, expected {FORMAT!r})",
                             path=mpath, field="format")
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(f"written by a newer rankstack (format_version "
                             f"{manifest['format_version']} > {FORMAT_VERSION})", path=mpath,
                             field="format_version")
        for key in ("dim", "n_docs"):
            if not isinstance(manifest.get(key), int):
                raise InputError(f"missing or non-integer {key!r}", path=mpath, field=key)
        epath = d / manifest.get("embeddings_file", EMBEDDINGS)
        ipath = d / manifest.get("doc_ids_file", DOC_IDS)
        if not epath.is_file() or not ipath.is_file():
            raise InputError("incomplete index: embeddings or doc ids file missing", path=d)
        try:
            emb = np.load(epath, mmap_mode="r" if mmap else None)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read embeddings: {exc}", path=epath) from None
        expected = (manifest["n_docs"], manifest["dim"])
        if emb.dtype != np.float32 or emb.shape != expected:
            raise InputError(f"embeddings are {emb.dtype} {emb.shape}, manifest says float32 "
                             f"{expected}", path=epath)
        ids = ipath.read_text(encoding="utf-8").splitlines()
        if len(ids) != manifest["n_docs"]:
            raise InputError(f"{len(ids)} doc ids for {manifest['n_docs']} rows", path=ipath)
        if encoder is not None:
            check_encoder(manifest, encoder, where=str(mpath))
        return cls(emb, ids, manifest, encoder, **search_settings)

    def set_threads(self, n: int) -> None:
        """Threads faiss may use for search (no-op on the numpy path)."""
        if self._faiss is not None:
            self._faiss.omp_set_num_threads(max(int(n), 1))

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def scorer(self) -> str:
        m = self.manifest
        approx = "" if self.mode == "exact" else f",hnsw(M={self.hnsw_m},ef={self.ef_search})"
        return f"dense({m.get('model')},{m.get('similarity', 'dot')}{approx})"

    # ------------------------------------------------------------------ search
    def _faiss_index(self) -> Any:
        if self._index is None:
            faiss = self._faiss
            emb = np.ascontiguousarray(self.embeddings, dtype=np.float32)
            if self.mode == "hnsw":
                idx = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                idx.hnsw.efConstruction = self.ef_construction
            else:
                idx = faiss.IndexFlatIP(self.dim)
            idx.add(emb)
            self._index = idx
        if self.mode == "hnsw":
            self._index.hnsw.efSearch = max(self.ef_search, 1)
        return self._index

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(doc_id, score)`` per query vector, in rankstack order (exact mode)."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = _as_matrix(vectors, len(vectors), "queries")
        if q.shape[1] != self.dim:
            raise ConfigError(f"query dim {q.shape[1]} != index dim {self.dim}")
        n = len(self.doc_ids)
        kk = min(k, n)
        probe = min(kk + 1, n)  # one extra to see a tie at the cut
        st = self.last_search_stats
        if self._faiss is not None:
            scores, idx = self._faiss_index().search(q, probe)
        else:
            full = q @ np.asarray(self.embeddings).T
            idx = np.argpartition(-full, probe - 1, axis=1)[:, :probe] if probe < n else \
                np.tile(np.arange(n), (len(q), 1))
            scores = np.take_along_axis(full, idx, axis=1)
        out: list[list[tuple[str, float]]] = []
        for row in range(len(q)):
            pairs = [(self.doc_ids[int(i)], float(s))
                     for i, s in zip(idx[row], scores[row], strict=True) if int(i) >= 0]
            pairs.sort(key=lambda p: (-p[1], p[0]))
            if self.mode == "exact" and len(pairs) > kk and pairs[kk - 1][1] == pairs[kk][1]:
                st.boundary_ties_rescored += 1
                full_row = np.asarray(self.embeddings) @ q[row]
                # score with the same arithmetic as above would be ideal; numpy is exact enough
                # to order ties by id: take every doc scoring >= the k-th score
                cut = pairs[kk - 1][1]
                sel = np.nonzero(full_row >= np.float32(cut) - 1e-6)[0]
                pairs = sorted(((self.doc_ids[int(i)], float(full_row[i])) for i in sel),
                               key=lambda p: (-p[1], p[0]))
            pairs = pairs[:kk]
            if len(pairs) < k:
                st.fewer_than_k += 1
            out.append(pairs)
        return out

    def search(
        self,
        queries: Mapping[str, Query] | Sequence[Query],
        k: int = 100,
        *,
        batch_size: int = 64,
        show_progress: bool = True,
        name: str | None = None,
    ) -> Run:
        """Encode queries in batches of ``batch_size`` and return the top-``k`` of each."""
        from tqdm.auto import tqdm

        if self.encoder is None:
            raise ConfigError("this dense index was opened without an encoder: pass encoder= "
                              "to DenseIndex.load (or use search_vectors)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        qs = list(queries.values()) if isinstance(queries, Mapping) else list(queries)
        self.last_search_stats = DenseSearchStats(queries=len(qs))
        run = Run(name=name or "dense")
        scorer = self.scorer
        for start in tqdm(range(0, len(qs), batch_size), desc="dense search", unit="batch",
                          disable=not show_progress):
            batch = qs[start:start + batch_size]
            vecs = _as_matrix(self.encoder.encode_queries([q.text for q in batch]), len(batch),
                              "queries")
            for q, pairs in zip(batch, self.search_vectors(vecs, k), strict=True):
                run.add(Ranking(q.id, [ScoredDoc(d, s) for d, s in pairs], scorer))
        return run


def check_encoder(manifest: Mapping[str, Any], encoder: Encoder, where: str = "") -> None:
    """Raise ConfigError when ``encoder`` encodes differently from the one that built the index."""
    info = encoder_info(encoder)
    for key in ("pooling", "normalized", "query_prefix", "passage_prefix", "append_eos"):
        if manifest.get(key) is not None and info.get(key) is not None \
                and manifest[key] != info[key]:
            raise ConfigError(f"{where}: index was built with {key}={manifest[key]!r}, the "
                              f"query encoder has {key}={info[key]!r}")
    if manifest.get("model") != info["model"]:
        log.warning("%s: index built with model %r, queries encoded with %r", where,
                    manifest.get("model"), info["model"])


def read_manifest(index_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``rankstack.json`` of any rankstack index directory (BM25 or dense)."""
    p = Path(index_dir) / MANIFEST
    if not p.is_file():
        raise InputError(f"no {MANIFEST}: not a rankstack index", path=index_dir)
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"corrupt manifest: {exc}", path=p) from None
    if not isinstance(m, dict):
        raise InputError("manifest is not a JSON object", path=p)
    return m


#: manifest keys passed back to the encoder class when re-opening an index's query encoder
_ENCODER_SETTINGS = {"pooling": "pooling", "similarity_setting": "similarity",
                     "query_prefix": "query_prefix", "passage_prefix": "passage_prefix",
                     "append_eos": "append_eos", "encode_dtype": "dtype"}


def load_encoder(model: str | None = None, family: str | None = None, **settings: Any) -> Encoder:
    """A bi-encoder by family name (default ``bi-encoder``) from the scorer registry.

    ``model=None`` is rankstack's offline default bi-encoder (the bundled MiniLM).
    """
    from rankstack.rerank.registry import scorer_class

    if model is None:
        from rankstack.rerank.defaults import default_model

        path, default_family, defaults = default_model()
        if family is not None and family != default_family:
            raise ConfigError(f"no model given for family {family!r}; the offline default is "
                              f"a {default_family!r}")
        model, family, settings = path, default_family, {**defaults, **settings}
    elif family is None and model.startswith("bundled:"):
        from rankstack.rerank.defaults import bundled_defaults

        recorded = bundled_defaults(model)
        if recorded is not None:
            family, settings = recorded[0], {**recorded[1], **settings}
    cls = scorer_class(family or "bi-encoder")
    enc = cls(model, **settings)
    if not (hasattr(enc, "encode_queries") and hasattr(enc, "encode_passages")):
        raise ConfigError(f"family {family!r} is not a bi-encoder (it has no "
                          f"encode_queries/encode_passages)")
    return enc


def load_encoder_for_index(index_dir: str | os.PathLike[str], model: str | None = None,
                           family: str | None = None, **settings: Any) -> Encoder:
    """The query encoder of a dense index: its manifest's model, family and text settings
    (pooling, similarity, prefixes), unless ``model`` / ``family`` / ``settings`` say otherwise."""
    m = read_manifest(index_dir)
    from_manifest = {arg: m[key] for key, arg in _ENCODER_SETTINGS.items()
                     if m.get(key) is not None}
    return load_encoder(model or m.get("model"), family or m.get("family"),
                        **(from_manifest | settings))
