"""``rankstack serve``: the HTTP re-ranking service (FastAPI + uvicorn), loopback by default."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rankstack.cli._common import add_config_arg, say
from rankstack.cli.rerank import _yaml_value, add_spec_args, spec_from_args


def add_parser(sub) -> None:
    from rankstack.serve.app import ServiceSettings

    d = ServiceSettings()
    p = sub.add_parser("serve", help="serve re-ranking (and search) over HTTP",
                       description="POST /rerank, POST /search (with --index), GET /health, "
                                   "GET /stats, GET /openapi.json. Binds 127.0.0.1 unless "
                                   "--host says otherwise.")
    add_config_arg(p)
    add_spec_args(p)
    p.add_argument("--reranker", type=_yaml_value, default=None,
                   help="the model as a whole spec (YAML/JSON; in a --config file: the key "
                        "'reranker'), e.g. an llm-listwise or pe-rank model")
    p.add_argument("--corpus", default=None, help="JSONL corpus: lets /rerank take ids")
    p.add_argument("--dataset", default=None,
                   help="dataset whose passages serve as the corpus (e.g. dl19)")
    p.add_argument("--index", default=None,
                   help="BM25 or dense index directory for /search (kind read from its "
                        "manifest)")
    p.add_argument("--index-model", default=None,
                   help="dense index: query encoder (default: the model in the manifest)")
    p.add_argument("--index-family", default=None, help="dense index: query encoder family")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--token-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer <token>' with the token in env VAR")
    p.add_argument("--token-file", default=None, help="...or with the token in this file")
    p.add_argument("--max-passages", type=int, default=d.max_passages)
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars)
    p.add_argument("--max-query-chars", type=int, default=d.max_query_chars)
    p.add_argument("--max-k", type=int, default=d.max_k)
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help="larger bodies get 413, chunked ones as soon as the limit is passed")
    p.add_argument("--request-timeout", type=float, default=d.request_timeout_s, metavar="S",
                   help="seconds per request before it is cancelled with 504 (0 = no limit)")
    p.add_argument("--max-batch-pairs", type=int, default=d.max_batch_pairs,
                   help="micro-batching: most pairs in one model call")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="micro-batching: how long to gather concurrent requests")
    p.add_argument("--no-batching", action="store_true",
                   help="score each request alone (batch of one request)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def read_token(env: str | None, file: str | None) -> str | None:
    from rankstack.errors import ConfigError

    if env and file:
        raise ConfigError("give --token-env or --token-file, not both")
    if env:
        tok = os.environ.get(env)
        if not tok:
            raise ConfigError(f"--token-env {env}: the environment variable is empty or unset")
        return tok.strip()
    if file:
        try:
            tok = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {file}: {exc}") from None
        if not tok:
            raise ConfigError(f"--token-file {file}: empty")
        return tok
    return None


def open_index(path: str, model: str | None = None, family: str | None = None,
               scorer: Any = None):
    """Open a BM25 or dense index directory, by the ``format`` its manifest declares.

    For a dense index, ``scorer`` (the served re-ranker) doubles as the query encoder when no
    ``model`` is named and it embeds exactly like the index's encoder (same model, family,
    pooling, normalisation and prefixes), so the model is loaded once.
    """
    from rankstack.errors import InputError
    from rankstack.retrieve.dense import read_manifest

    manifest = read_manifest(path)
    fmt = manifest.get("format")
    if fmt == "rankstack-bm25":
        from rankstack.retrieve.bm25 import BM25Index

        return BM25Index.load(path)
    if fmt == "rankstack-dense":
        from rankstack.retrieve.dense import DenseIndex, encoder_info, load_encoder_for_index

        if model is None and family is None and scorer is not None \
                and hasattr(scorer, "encode_queries"):
            info = encoder_info(scorer)
            if all(manifest.get(k) == v for k, v in info.items()):
                return DenseIndex.load(path, scorer)
        return DenseIndex.load(path, load_encoder_for_index(path, model=model, family=family))
    raise InputError(f"unknown index format {fmt!r}", path=path, field="format")


def run(args: argparse.Namespace) -> int:
    from rankstack.errors import ConfigError
    from rankstack.serve.app import ServiceSettings, create_app
    from rankstack.serve.server import is_loopback, serve_forever

    token = read_token(args.token_env, args.token_file)
    settings = ServiceSettings(
        host=args.host, port=args.port, max_passages=args.max_passages,
        max_text_chars=args.max_text_chars, max_query_chars=args.max_query_chars,
        max_k=args.max_k, max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout or None,
        max_batch_pairs=args.max_batch_pairs, max_wait_ms=args.max_wait_ms,
        max_batch_requests=1 if args.no_batching else None, token=token)
    if not is_loopback(args.host) and token is None:
        say(f"warning: serving on {args.host} without a token: anyone who can reach it "
              f"can use it (see --token-env)")
    if args.corpus and args.dataset:
        raise ConfigError("give --corpus or --dataset, not both")
    corpus = None
    if args.corpus:
        from rankstack.io import read_corpus

        corpus = read_corpus(args.corpus)
    elif args.dataset:
        from rankstack.datasets import load_dataset

        corpus = load_dataset(args.dataset).docs
    from rankstack.rerank.spec import load_reranker

    spec = spec_from_args(args, base=args.reranker)
    spec.setdefault("settings", {}).setdefault("show_progress", False)
    reranker = load_reranker(spec)
    index = open_index(args.index, args.index_model, args.index_family,
                       scorer=getattr(reranker, "scorer", None)) if args.index else None
    app = create_app(reranker, settings=settings, corpus=corpus, index=index,
                     index_name=getattr(index, "scorer", None) if index is not None else None)
    say(f"serving {reranker.name} on http://{args.host}:{args.port} "
          f"(docs at /docs, schema at /openapi.json)")
    serve_forever(app, args.host, args.port, log_level=args.log_level)
    return 0
