"""``rankstack rerank``: re-rank a candidate run with any re-ranker family (one spec).

The re-ranker is a spec (:mod:`rankstack.rerank.spec`): ``--model``, ``--family`` or
``--preset``, ``--backend``, settings from ``--set KEY=VALUE`` and the typed flags below, or a
whole spec as ``reranker:`` in a ``--config`` YAML / ``--reranker '{...}'`` (e.g. a fusion).
``llm-rerank`` is this command with an LLM family preselected (``--mode``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rankstack.cli._common import add_config_arg, say
from rankstack.config import parse_settings, setting_arg


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not valid YAML/JSON: {exc}") from None


#: typed flags that become re-ranker settings when given (dest -> help)
SETTING_FLAGS: dict[str, tuple[type, str]] = {
    "batch_size": (int, "pairs per model batch"),
    "threads": (int, "CPU threads (scorer default 1)"),
    "workers": (int, "N processes (each with --threads threads, default 1): runs N ranks, "
                     "as --devices N; on small CPUs faster than more threads"),
    "dtype": (str, "auto | fp32 | bf16 | bf16-mixed (encoder families; auto = bf16 where the "
                   "CPU has AMX/AVX512-BF16); LLM hf backend also float32/bfloat16"),
    "quantize": (str, "int8: ONNX dynamic int8 (changes rankings)"),
    "query_length": (int, "query token budget"),
    "doc_length": (int, "passage token budget"),
    "max_length": (int, "cap on the whole input"),
    "device": (str, "cpu (default) or cuda"),
    "template": (str, "LLM families: built-in template (rankzephyr, rankgpt, yesno) or YAML"),
    "window": (int, "llm-listwise / pe-rank: window size (default 20)"),
    "stride": (int, "llm-listwise / pe-rank: window stride (default 10)"),
    "passes": (int, "llm-listwise / pe-rank: sliding passes (default 1)"),
    "max_passage_tokens": (int, "LLM families: passage token budget"),
    "cache_dir": (str, "LLM families: on-disk call cache (resume / reruns cost nothing)"),
    "n_ctx": (int, "gguf backend: context length"),
    "base_url": (str, "openai backend: API root, e.g. http://127.0.0.1:8000/v1"),
    "api_key_env": (str, "openai backend: environment variable holding the API key"),
    "max_concurrency": (int, "openai backend: parallel requests"),
}


def add_spec_args(p: argparse.ArgumentParser, *, what: str = "re-ranker") -> None:
    """The spec flags shared by rerank, llm-rerank, teach and serve."""
    p.add_argument("--model", default=None,
                   help=f"{what} model: hub id, local dir, bundled:<name>, .gguf file or served "
                        f"model name (default: the bundled MiniLM bi-encoder)")
    p.add_argument("--family", default=None,
                   help="family: cross-encoder, bi-encoder, monot5, twolar, rankt5, rankllama, "
                        "yes-no, llm-listwise, llm-pointwise, pe-rank, bm25, fusion")
    p.add_argument("--preset", default=None, help="a named preset (rankstack.rerank.presets)")
    p.add_argument("--backend", default=None,
                   help="what runs the model: hf | gguf | openai (LLM families), torch | onnx "
                        "(encoder families)")
    p.add_argument("--set", "--setting", dest="setting", type=setting_arg, action="append",
                   default=[], metavar="KEY=VALUE",
                   help="a family setting (repeatable), e.g. --set doc_length=256")


def add_device_args(p: argparse.ArgumentParser) -> None:
    """Where the job runs: the settings of ``rankstack fit`` (Lightning), shared by rerank,
    llm-rerank and teach (:mod:`rankstack.rerank.predict`)."""
    p.add_argument("--accelerator", default=None, help="cpu (default), gpu, auto (Lightning)")
    p.add_argument("--devices", default=None,
                   help="ranks per node: 2 = two processes (gloo/DDP on CPU), -1 = every GPU; "
                        "queries are sharded over them and the runs merged on rank 0")
    p.add_argument("--num-nodes", type=int, default=None, help="machines (Lightning num_nodes)")
    p.add_argument("--strategy", default=None, help="Lightning strategy (default auto; ddp)")


def launch_ranks(args: argparse.Namespace, spec: dict[str, Any] | None = None):
    """Start this command's ranks (:func:`rankstack.rerank.predict.launch`).

    A job-level ``workers: N`` setting (the former process pool) runs N ranks instead: ranks
    shard whole queries and measured as fast (README, Scaling), so a job has one way to use
    several processes; the pool itself stays for serving.
    """
    import logging

    from rankstack.errors import ConfigError
    from rankstack.rerank.predict import launch

    values = {k: getattr(args, k, None) for k in ("accelerator", "devices", "num_nodes",
                                                   "strategy")}
    workers = (spec or {}).get("settings", {}).pop("workers", None)
    if workers is not None and workers != 1:
        if values["devices"] is not None:
            raise ConfigError("give --devices or --workers, not both (--workers N runs N ranks)")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}")
        logging.getLogger("rankstack").warning("--workers %d: running %d ranks (--devices %d)",
                                               workers, workers, workers)
        values["devices"] = workers
        values["strategy"] = values["strategy"] or "ddp"
    return launch(values)


def place_on(spec: dict[str, Any], ranks) -> dict[str, Any]:
    """A spec whose model goes to this rank's device (GPU ranks; CPU keeps the settings)."""
    if ranks.device != "cpu":
        spec.setdefault("settings", {}).setdefault("device", ranks.device)
    return spec


def add_parser(sub, name: str = "rerank", *, llm_alias: bool = False) -> None:
    p = sub.add_parser(
        name, help=("re-rank candidates with an LLM (alias of 'rerank' with an LLM family)"
                    if llm_alias else "re-rank a candidate run with any re-ranker into a TREC run"),
        description="Re-ranks the top --depth candidates of each query; candidates below depth "
                    "follow in their original order. With no --model, the bundled "
                    "all-MiniLM-L6-v2 bi-encoder is used (offline). The family is never "
                    "guessed: give --family (or --preset) unless the model's config.json "
                    "records rankstack_family. Finished queries go to OUT.journal.jsonl: "
                    "re-running an interrupted command resumes from it. The report (counts, "
                    "budgets, ties, LLM usage) is written to OUT.report.json.")
    add_config_arg(p)
    add_spec_args(p)
    if llm_alias:
        p.add_argument("--mode", choices=["listwise", "pointwise"], default="listwise",
                       help="family llm-listwise (default) or llm-pointwise")
    p.add_argument("--reranker", type=_yaml_value, default=None,
                   help="a whole spec as YAML/JSON, e.g. '{family: fusion, members: [...]}' "
                        "(in a --config file: the key 'reranker')")
    p.add_argument("--candidates", default=None,
                   help="dataset name (dl19, dl20, ...) or retrieve-results JSON with passages")
    p.add_argument("--run", default=None, help="TREC run to re-rank (replaces the candidates' "
                                               "run; passages from --candidates or --corpus)")
    p.add_argument("--topics", default=None, help="topics file (qid<TAB>text)")
    p.add_argument("--corpus", default=None, help="JSONL corpus with the passage texts")
    p.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query")
    p.add_argument("--max-queries", type=int, default=None, help="only the first N queries")
    p.add_argument("--out", required=True, help="output TREC run (written atomically)")
    p.add_argument("--run-tag", default=None, help="TREC run tag (default: derived)")
    for dest, (typ, text) in SETTING_FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=text)
    p.add_argument("--on-missing", choices=["raise", "skip", "keep"], default=None,
                   help="doc/query ids without text: error (default), skip, or keep below the "
                        "re-ranked docs; counted")
    p.add_argument("--stats", default=None, help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_args(p)
    p.set_defaults(func=run, llm_alias=llm_alias)


def spec_from_args(args: argparse.Namespace, *, base: Any = None) -> dict[str, Any]:
    """The re-ranker spec the flags (and a ``reranker``/``teacher`` mapping) describe."""
    from rankstack.errors import ConfigError

    spec: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, dict):
            raise ConfigError(f"the re-ranker spec must be a mapping, got {type(base).__name__}")
        spec = json.loads(json.dumps(base))
    for key in ("model", "family", "preset", "backend"):
        v = getattr(args, key, None)
        if v is not None:
            spec[key] = v
    if getattr(args, "llm_alias", False) and "family" not in spec and "preset" not in spec:
        spec["family"] = f"llm-{args.mode}"
    settings = dict(spec.get("settings") or {})
    # from the flags (KEY=VALUE) or YAML (setting: {pooling: mean} or a list of KEY=VALUE)
    settings.update(parse_settings(getattr(args, "setting", None), "--set"))
    for key in SETTING_FLAGS:
        v = getattr(args, key, None)
        if v is not None:  # only what was asked: other families take other settings
            settings[key] = v
    if getattr(args, "on_missing", None) is not None:
        settings["on_missing"] = args.on_missing
    if getattr(args, "no_progress", False):
        settings["show_progress"] = False
    if settings:
        spec["settings"] = settings
    return spec


#: pairs between two journal commits of ``rerank`` (``--set chunk_pairs=N`` changes it)
JOURNAL_PAIRS = 256


def journal_pairs(spec: dict[str, Any]) -> int:
    """How many pairs ``rerank`` scores between journal commits: the spec's ``chunk_pairs``
    setting if given, else :data:`JOURNAL_PAIRS`."""
    from rankstack.errors import ConfigError

    value = (spec.get("settings") or {}).get("chunk_pairs", JOURNAL_PAIRS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"settings.chunk_pairs must be a positive integer, not {value!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError
    from rankstack.io import write_run
    from rankstack.records import Run
    from rankstack.rerank.predict import rerank_sharded
    from rankstack.rerank.report import RerankReport
    from rankstack.rerank.spec import load_reranker

    if not args.candidates and not args.run:
        raise ConfigError("give --candidates (dataset or retrieve-results JSON) or --run")
    spec = spec_from_args(args, base=args.reranker)
    ranks = launch_ranks(args, spec)  # before any model is loaded: each rank loads its own
    ds = load_dataset(args.candidates or "files", run=args.run, topics=args.topics,
                      corpus=args.corpus)
    if ds.run is None:
        raise ConfigError(f"{args.candidates}: no candidate run (give --run)")
    if not ds.docs:
        raise ConfigError("no passage texts: give --candidates with passages or --corpus")
    candidates = ds.run
    if args.max_queries is not None:
        if args.max_queries < 1:
            raise ConfigError(f"--max-queries must be a positive integer, not {args.max_queries}")
        candidates = Run({q: ds.run[q] for q in list(ds.run)[: args.max_queries]},
                         name=ds.run.name)
    reranker = load_reranker(place_on(spec, ranks))
    journal = Path(str(args.out) + ".journal.jsonl")
    if journal.exists() and ranks.is_zero:
        say(f"resuming from {journal}")
    try:
        res = rerank_sharded(reranker, candidates, ds.queries, ds.docs, journal=journal,
                             ranks=ranks, depth=args.depth, chunk_pairs=journal_pairs(spec),
                             show_progress=not args.no_progress)
    finally:
        reranker.close()
    if not ranks.is_zero:
        return 0  # rank 0 merged the ranks' journals and writes the outputs
    result = res.run
    assert result is not None
    report = res.report or RerankReport(model=reranker.name, score_kind=reranker.score_kind,
                                        depth=args.depth, resumed_queries=res.resumed_queries)
    report.settings.setdefault("ranks", res.world_size)
    write_run(result, args.out, tag=args.run_tag)
    res.remove_journals()
    report.settings.setdefault("spec", reranker.spec.to_dict())  # type: ignore[attr-defined]
    if ds.qrels is not None:
        report.notes["nDCG@10"] = _ndcg10(ds, result)
    report.save(f"{args.out}.report.json")
    if args.stats:
        report.save(args.stats)
    if report.mode:
        from rich.console import Console

        report.print_table(Console(stderr=True))
    say(report.summary())
    say(f"scores: {report.score_kind} from {report.model} -> {args.out} "
          f"(report: {args.out}.report.json)")
    return 0


def _ndcg10(ds, out) -> dict[str, float]:
    """nDCG@10 of the first stage and of the re-ranked run on the re-ranked queries."""
    import ir_measures
    from ir_measures import nDCG

    qrels = {q: ds.qrels[q] for q in out if q in ds.qrels}
    if not qrels:
        return {}
    before = {q: ds.run[q].scores() for q in qrels}
    after = {q: out[q].scores() for q in qrels}
    m = nDCG @ 10
    return {"first_stage": round(ir_measures.calc_aggregate([m], qrels, before)[m], 4),
            "reranked": round(ir_measures.calc_aggregate([m], qrels, after)[m], 4),
            "queries": len(qrels)}
