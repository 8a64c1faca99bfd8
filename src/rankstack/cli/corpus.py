"""``rankstack corpus``: a JSONL corpus from the passages of named datasets' candidate lists."""

from __future__ import annotations

import argparse

from rankstack.cli._common import add_config_arg, say


def add_parser(sub) -> None:
    p = sub.add_parser(
        "corpus", help="write the union of datasets' candidate passages as a JSONL corpus",
        description="Collect the passages (with text) of the candidate lists of the named "
                    "datasets (or retrieve-results JSON files), de-duplicate them by doc id "
                    "and write them as JSONL {id, text[, title]}. A doc id seen again with a "
                    "different text keeps the first text; such conflicts are counted.")
    add_config_arg(p)
    p.add_argument("--from", dest="sources", nargs="+", required=True, metavar="DATASET",
                   help="dataset names (e.g. dl19 dl20) or retrieve-results JSON paths")
    p.add_argument("--out", required=True,
                   help="output JSONL (.gz for gzip; .tsv / .tsv.gz writes TSV)")
    p.set_defaults(func=run)


def collect_docs(sources: list[str], *, show_progress: bool = True):
    """Union of the datasets' passages, first occurrence wins; returns (docs, per-source stats)."""
    from tqdm.auto import tqdm

    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError
    from rankstack.records import Doc

    docs: dict[str, Doc] = {}
    stats: list[dict[str, int | str]] = []
    for name in tqdm(sources, desc="datasets", unit="ds", disable=not show_progress):
        ds = load_dataset(name)
        if not ds.docs:
            raise ConfigError(f"dataset {name!r} has no passages with text")
        new = dup = conflict = 0
        for did, doc in ds.docs.items():
            old = docs.get(did)
            if old is None:
                docs[did] = doc
                new += 1
            elif old.full_text == doc.full_text:
                dup += 1
            else:
                conflict += 1
        stats.append({"source": name, "passages": len(ds.docs), "new": new,
                      "duplicates": dup, "conflicts": conflict})
    return docs, stats


def run(args: argparse.Namespace) -> int:
    from rankstack.io import write_corpus

    docs, stats = collect_docs(args.sources)
    n = write_corpus(docs.values(), args.out)
    for s in stats:
        say(f"{s['source']}: {s['passages']} passages, {s['new']} new, "
              f"{s['duplicates']} already present, {s['conflicts']} id conflicts (first text kept)")
    say(f"wrote {n} unique passages to {args.out}")
    return 0
