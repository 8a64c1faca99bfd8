"""The encoders fetched by scripts/fetch_models.py: resolution, clear errors, both nomic backends.

Tests that need the weights skip with the reason when they are not in the model cache
(``python scripts/fetch_models.py`` fetches them; ~700 MB).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rankstack.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _fetched(name: str) -> bool:
    from rankstack.rerank.defaults import FETCHED, models_cache_dir

    folder = models_cache_dir() / name
    return (folder / FETCHED[name][0]).is_file() and (folder / ".sha256").is_file()


needs_mpnet = pytest.mark.skipif(not _fetched("all-mpnet-base-v2"),
                                 reason="all-mpnet-base-v2 not fetched "
                                        "(python scripts/fetch_models.py all-mpnet-base-v2)")
needs_nomic = pytest.mark.skipif(not _fetched("nomic-embed-text-v1.5"),
                                 reason="nomic-embed-text-v1.5 not fetched "
                                        "(python scripts/fetch_models.py nomic-embed-text-v1.5)")


def test_unfetched_model_says_how_to_fetch_it(tmp_path, monkeypatch):
    from rankstack.rerank.defaults import bundled_defaults, resolve_bundled

    monkeypatch.setenv("RANKSTACK_MODELS", str(tmp_path))
    with pytest.raises(ConfigError, match="fetch_models.py nomic-embed-text-v1.5"):
        resolve_bundled("bundled:nomic-embed-text-v1.5")
    with pytest.raises(ConfigError, match="unknown bundled model"):
        resolve_bundled("bundled:nope")
    assert bundled_defaults("bundled:all-mpnet-base-v2")[0] == "bi-encoder"
    assert bundled_defaults("bundled:nomic-embed-text-v1.5")[0] == "gguf-bi-encoder"
    assert bundled_defaults("org/model") is None


def test_fetch_script_rejects_unknown_models_before_any_download(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_models.py"),
                           "--cache-dir", str(tmp_path), "no-such-model"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@needs_mpnet
@needs_nomic
def test_fetch_script_is_idempotent():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_models.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("already fetched") == 2


@needs_mpnet
def test_mpnet_loads_by_its_bundled_id_with_no_family():
    from rankstack.rerank.reranker import Reranker

    rr = Reranker.from_pretrained("bundled:all-mpnet-base-v2", threads=1)
    assert rr.scorer.family == "bi-encoder" and rr.scorer.pooling == "mean"
    s = rr.scorer.score_pairs(["how long do fleas live"] * 2,
                              ["A flea can live up to a year.", "Paris is in France."])
    assert s[0] > s[1]


@needs_nomic
def test_nomic_torch_backend_matches_llama_cpp():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (extra gguf)")
    pytest.importorskip("gguf", reason="gguf not installed (extra gguf)")
    from rankstack.rerank.gguf_bi_encoder import GGUFBiEncoderScorer

    texts = ["A flea can live up to a year.", "Paris is the capital of France.", "rain"]
    kw = {"query_prefix": "search_query: ", "passage_prefix": "search_document: "}
    ref = GGUFBiEncoderScorer("bundled:nomic-embed-text-v1.5", backend="llama_cpp", **kw)
    ours = GGUFBiEncoderScorer("bundled:nomic-embed-text-v1.5", backend="torch", dtype="fp32",
                               **kw)
    a, b = ref.encode_passages(texts), ours.encode_passages(texts)
    assert ((a * b).sum(1) > 0.9999).all()
    ref.close()
    # embeddings are cached per text: the second call embeds nothing new
    before = ours.counts["embedded"]
    ours.encode_passages(texts)
    assert ours.counts["embedded"] == before and ours.counts["cache_hits"] >= 3
    s = ours.score_pairs(["how long do fleas live"] * 2, texts[:2])
    assert s[0] > s[1]
