"""Corpora: JSONL (one ``{"id"|"docid"|"_id", "title"?, "text"|"contents"}`` object per line)
or TSV (``docid<TAB>text`` or ``docid<TAB>title<TAB>text``, CSV-style double-quote quoting).

The format is chosen by extension: ``.tsv`` / ``.tsv.gz`` is TSV, anything else JSONL.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator

from rankstack.errors import InputError
from rankstack.io._base import ErrorPolicy, OnError, atomic_write, iter_lines
from rankstack.records import Doc

ID_KEYS = ("id", "docid", "_id", "doc_id")
TEXT_KEYS = ("text", "contents", "content", "body")
FORMATS = ("JSONL {id, text[, title]} (.jsonl, .jsonl.gz)",
           "TSV docid<TAB>text or docid<TAB>title<TAB>text (.tsv, .tsv.gz)")
_TSV_SUFFIXES = (".tsv", ".tsv.gz")


def is_tsv(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).lower().endswith(_TSV_SUFFIXES)


def _pick(obj: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    for k in keys:
        if k in obj:
            return k, obj[k]
    return None, None


def iter_corpus(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    skipped: list[InputError] | None = None,
) -> Iterator[Doc]:
    """Stream documents from a JSONL or TSV (optionally .gz) corpus; repeated ids are an error."""
    if is_tsv(path):
        yield from _iter_tsv(path, on_error=on_error, skipped=skipped)
        return
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    seen: set[str] = set()
    for no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno} (accepted "
                                 f"corpus formats: {'; '.join(FORMATS)})",
                                 path=path, line=no) from None
            except (ValueError, RecursionError) as exc:  # e.g. an integer too long, deep nesting
                raise InputError(f"invalid JSON: {type(exc).__name__}: {exc}", path=path,
                                 line=no) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", path=path, line=no)
            key, did = _pick(obj, ID_KEYS)
            if key is None:
                raise InputError(f"missing id (one of {', '.join(ID_KEYS)})", path=path, line=no,
                                 field="id")
            if isinstance(did, bool) or not isinstance(did, str | int) or str(did) == "":
                raise InputError(f"id must be a non-empty string or integer, got {did!r}",
                                 path=path, line=no, field=key)
            did = str(did)
            tkey, text = _pick(obj, TEXT_KEYS)
            if tkey is None:
                raise InputError(f"missing text (one of {', '.join(TEXT_KEYS)})", path=path,
                                 line=no, field="text")
            if not isinstance(text, str):
                raise InputError(f"text must be a string, got {type(text).__name__}", path=path,
                                 line=no, field=tkey)
            title = obj.get("title")
            title = "" if title is None else title
            if not isinstance(title, str):
                raise InputError(f"title must be a string, got {type(title).__name__}",
                                 path=path, line=no, field="title")
            if did in seen:
                raise InputError(f"duplicate doc id {did!r}", path=path, line=no, field=key)
            seen.add(did)
            yield Doc(did, text, title)
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)


def _iter_tsv(path: str | os.PathLike[str], *, on_error: OnError = "raise",
              skipped: list[InputError] | None = None) -> Iterator[Doc]:
    """TSV rows of 2 (id, text) or 3 (id, title, text) fields. A field that starts with a
    double quote is CSV-quoted: it may hold tabs, doubled quotes and newlines (the record then
    spans lines; errors name its first line). Quotes inside an unquoted field are literal."""
    policy = ErrorPolicy(on_error, skipped)
    before = len(policy.skipped)
    seen: set[str] = set()
    reader = csv.reader((line + "\n" for _, line in iter_lines(path)), delimiter="\t",
                        quotechar='"')
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            policy.handle(InputError(f"bad TSV quoting: {exc}", path=path, line=start))
            start = reader.line_num + 1
            continue
        no, start = start, reader.line_num + 1
        if not row or not any(f.strip() for f in row):
            continue
        try:
            if len(row) not in (2, 3):
                raise InputError(f"expected 2 fields (docid<TAB>text) or 3 (docid<TAB>title<TAB>"
                                 f"text), found {len(row)}", path=path, line=no, field="columns")
            did = row[0].strip()
            if not did:
                raise InputError("empty id", path=path, line=no, field="id")
            title, body = ("", row[1]) if len(row) == 2 else (row[1], row[2])
            if did in seen:
                raise InputError(f"duplicate doc id {did!r}", path=path, line=no, field="id")
            seen.add(did)
            yield Doc(did, body, title)
        except InputError as err:
            policy.handle(err)
    policy.report(path, before)


def read_corpus(path: str | os.PathLike[str], **kwargs) -> dict[str, Doc]:
    return {d.id: d for d in iter_corpus(path, **kwargs)}


def write_corpus(docs: Iterable[Doc], path: str | os.PathLike[str]) -> int:
    """Write JSONL (or TSV for a ``.tsv``/``.tsv.gz`` path) atomically; returns the count."""
    n = 0
    if is_tsv(path):
        with atomic_write(path) as fh:
            w = csv.writer(fh, delimiter="\t", quotechar='"', lineterminator="\n")
            for d in docs:
                w.writerow([d.id, d.title, d.text] if d.title else [d.id, d.text])
                n += 1
        return n
    with atomic_write(path) as fh:
        for d in docs:
            obj = {"id": d.id, "title": d.title, "text": d.text} if d.title else {"id": d.id, "text": d.text}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n
