"""Datasets by name, local files, or ``irds:<id>``.

A :class:`Dataset` bundles what a stage needs: queries, passages (with text), an optional
candidate Run, and optional Qrels. Named datasets are read from the data directory:
``$RANKSTACK_DATA`` if set, else the first ``../shared/data`` found from the working
directory or from the source checkout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rankstack.errors import ConfigError, InputError, MissingDependencyError
from rankstack.io import read_corpus, read_qrels, read_retrieve_results, read_run, read_topics
from rankstack.records import Doc, Qrels, Query, Run

ENV_VAR = "RANKSTACK_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    """Files of a named dataset, relative to the data directory."""

    candidates: str | None = None
    qrels: str | None = None
    topics: str | None = None
    description: str = ""
    # Minimum grade a binary measure (RR, AP, recall...) counts as relevant; TREC DL uses 2.
    binary_rel: int = 1


_DL = "trec-dl/"
DATASETS: dict[str, DatasetSpec] = {
    "dl19": DatasetSpec(_DL + "retrieve_results_dl19_top100.json", _DL + "qrels.dl19-passage.txt",
                        description="TREC DL 2019 passage, BM25 top-100, graded qrels", binary_rel=2),
    "dl20": DatasetSpec(_DL + "retrieve_results_dl20_top100.json", _DL + "qrels.dl20-passage.txt",
                        description="TREC DL 2020 passage, BM25 top-100, graded qrels", binary_rel=2),
    "dl21": DatasetSpec(_DL + "retrieve_results_dl21_top100.json",
                        description="TREC DL 2021 passage (MS MARCO v2), BM25 top-100, no qrels"),
    "dl22": DatasetSpec(_DL + "retrieve_results_dl22_top100.json",
                        description="TREC DL 2022 passage (MS MARCO v2), BM25 top-100, no qrels"),
    "dl19-splade": DatasetSpec(_DL + "retrieve_results_SPLADE_P_P_ENSEMBLE_DISTIL_dl19_top100.json",
                               _DL + "qrels.dl19-passage.txt",
                               description="TREC DL 2019, SPLADE++ ED top-100", binary_rel=2),
    "dl20-splade": DatasetSpec(_DL + "retrieve_results_SPLADE_P_P_ENSEMBLE_DISTIL_dl20_top100.json",
                               _DL + "qrels.dl20-passage.txt",
                               description="TREC DL 2020, SPLADE++ ED top-100", binary_rel=2),
    "dl19-tasb": DatasetSpec(_DL + "retrieve_results_D_BERT_KD_TASB_dl19_top100.json",
                             _DL + "qrels.dl19-passage.txt",
                             description="TREC DL 2019, TAS-B dense top-100", binary_rel=2),
    "dl20-tasb": DatasetSpec(_DL + "retrieve_results_D_BERT_KD_TASB_dl20_top100.json",
                             _DL + "qrels.dl20-passage.txt",
                             description="TREC DL 2020, TAS-B dense top-100", binary_rel=2),
    "msmarco-dev-subset": DatasetSpec(
        qrels="msmarco/qrels.msmarco-passage.dev-subset.txt",
        topics="msmarco/topics.msmarco-passage.dev-subset.txt",
        description="MS MARCO passage dev subset: 6,980 queries, qrels; no passage text",
    ),
}


@dataclass
class Dataset:
    name: str
    queries: dict[str, Query]
    docs: dict[str, Doc] = field(default_factory=dict)
    run: Run | None = None
    qrels: Qrels | None = None

    def doc(self, doc_id: str) -> Doc:
        try:
            return self.docs[doc_id]
        except KeyError:
            raise InputError(f"doc id {doc_id!r} is not in the corpus of dataset {self.name!r}",
                             field="doc_id") from None


def data_dir() -> Path:
    """The data directory: ``$RANKSTACK_DATA``, else ``../shared/data`` (from cwd or checkout)."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        if not p.is_dir():
            raise ConfigError(f"${ENV_VAR}={env} is not a directory")
        return p
    candidates = [Path.cwd() / ".." / "shared" / "data"]
    # src/rankstack/datasets.py -> checkout root is parents[2]
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise ConfigError(
        f"no data directory: set ${ENV_VAR} or place the data at ../shared/data "
        f"(looked in {', '.join(dict.fromkeys(str(c) for c in candidates))})"
    )


def load_dataset(
    name: str,
    *,
    run: str | os.PathLike[str] | None = None,
    topics: str | os.PathLike[str] | None = None,
    qrels: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`), a local file, or ``irds:<id>``.

    ``name`` may be a retrieve-results JSON path. The keyword files replace or add parts:
    a TREC ``run``, ``topics``, ``qrels``, a JSONL ``corpus``.
    """
    if name.startswith("irds:"):
        ds = _load_irds(name[5:])
    elif name in DATASETS:
        spec = DATASETS[name]
        root = data_dir()
        ds = Dataset(name, {})
        if spec.candidates:
            c = read_retrieve_results(root / spec.candidates, name=f"{name}-candidates")
            ds.queries, ds.docs, ds.run = c.queries, c.docs, c.run
        if spec.topics:
            ds.queries = read_topics(root / spec.topics)
        if spec.qrels:
            ds.qrels = read_qrels(root / spec.qrels)
            ds.qrels.binary_rel = spec.binary_rel
    elif name.endswith(".json") or name.endswith(".json.gz"):
        c = read_retrieve_results(name)
        ds = Dataset(Path(name).name, c.queries, c.docs, c.run)
    elif name in ("", "files"):
        ds = Dataset("files", {})
    else:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError(f"unknown dataset {name!r}: use one of {known}, a retrieve-results "
                          f"JSON path, or irds:<id>")
    if topics:
        ds.queries = read_topics(topics)
    if corpus:
        ds.docs = read_corpus(corpus)
    if run:
        ds.run = read_run(run)
    if qrels:
        ds.qrels = read_qrels(qrels)
    return ds


def _load_irds(dataset_id: str) -> Dataset:
    try:
        import ir_datasets
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("ir_datasets", "irds", "irds: datasets") from exc
    try:
        d = ir_datasets.load(dataset_id)
        queries = {q.query_id: Query(q.query_id, q.text) for q in d.queries_iter()} \
            if d.has_queries() else {}
        qrels = None
        if d.has_qrels():
            j: dict[str, dict[str, int]] = {}
            for r in d.qrels_iter():
                j.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
            qrels = Qrels(j, name=dataset_id)
        run = None
        docs: dict[str, Doc] = {}
        if d.has_scoreddocs():
            scores: dict[str, dict[str, float]] = {}
            for s in d.scoreddocs_iter():
                scores.setdefault(s.query_id, {})[s.doc_id] = float(s.score)
            run = Run.from_dict(scores, name=dataset_id, scorer=dataset_id)
            if d.has_docs():
                store = d.docs_store()
                needed = {doc for r in scores.values() for doc in r}
                for doc in store.get_many_iter(needed):
                    docs[doc.doc_id] = Doc(doc.doc_id, getattr(doc, "text", ""),
                                           getattr(doc, "title", "") or "")
    except KeyError as exc:
        raise ConfigError(f"ir_datasets does not know {dataset_id!r}") from exc
    except OSError as exc:
        raise ConfigError(f"ir_datasets could not reach the data of {dataset_id!r} "
                          f"(offline, or the files need a manual download): {exc}") from exc
    return Dataset(f"irds:{dataset_id}", queries, docs, run, qrels)
