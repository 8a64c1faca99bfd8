"""Shared pytest fixtures (others may append fixtures here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def write_file(tmp_path: Path):
    """``write_file(name, text_or_bytes)`` -> path of a file in tmp_path (.gz is gzipped)."""
    import gzip

    def _write(name: str, content: str | bytes) -> Path:
        p = tmp_path / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        if name.endswith(".gz"):
            data = gzip.compress(data)
        p.write_bytes(data)
        return p

    return _write


@pytest.fixture(scope="session")
def dl19():
    """The dl19 dataset (43 queries, BM25 top-100 with passage text, graded qrels).

    Skips when the shared data directory is missing.
    """
    from rankstack.datasets import load_dataset
    from rankstack.errors import ConfigError

    try:
        return load_dataset("dl19")
    except ConfigError as exc:
        pytest.skip(f"dl19 data not available: {exc}")


# Tiny offline models (BERT, ELECTRA, T5, Llama) built once per session; see tests/tiny_models.py.
from tiny_models import (  # noqa: E402, F401
    tiny_bert_dir,
    tiny_chat_llama,
    tiny_electra_dir,
    tiny_lightning_ir_dir,
    tiny_llama_cls_dir,
    tiny_llama_dir,
    tiny_t5_dir,
)


def pytest_sessionstart(session) -> None:
    """Under CI (RANKSTACK_REQUIRE_DATA=1) missing TREC DL data is an error, not a skip:
    the real-data tests are the ones that check the published numbers."""
    if os.environ.get("RANKSTACK_REQUIRE_DATA") == "1":
        from rankstack.datasets import data_dir
        from rankstack.errors import ConfigError

        try:
            data_dir()
        except ConfigError as exc:
            pytest.exit(f"RANKSTACK_REQUIRE_DATA=1 but the data is missing: {exc}", returncode=3)
