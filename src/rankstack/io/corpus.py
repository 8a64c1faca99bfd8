"""JSONL corpora: one ``{"id"|"docid"|"_id", "title"?, "text"|"contents"}`` object per line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from rankstack.errors import InputError
from rankstack.io._base import ErrorPolicy, OnError, atomic_write, iter_lines
from rankstack.records import Doc

ID_KEYS = ("id", "docid", "_id", "doc_id")
TEXT_KEYS = ("text", "contents", "content", "body")


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
    """Stream documents from a JSONL (optionally .gz) corpus; repeated ids are an error."""
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
                raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno}",
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


def read_corpus(path: str | os.PathLike[str], **kwargs) -> dict[str, Doc]:
    return {d.id: d for d in iter_corpus(path, **kwargs)}


def write_corpus(docs: Iterable[Doc], path: str | os.PathLike[str]) -> int:
    n = 0
    with atomic_write(path) as fh:
        for d in docs:
            obj = {"id": d.id, "title": d.title, "text": d.text} if d.title else {"id": d.id, "text": d.text}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n
