"""Presets for published models: one name = family + template + passage preparation + budgets +
pooling + prefixes + precision, i.e. the reference implementation's behaviour.

``PRESETS[name]`` is a re-ranker spec mapping (the keys ``family``, ``model``, optionally
``backend``, and ``settings``), merged *under* what the user gives (``preset: rankllama`` in a
spec, ``--preset rankllama`` on the command line): every knob stays overridable, e.g.
``{"preset": "monot5", "settings": {"dtype": "bf16"}}`` or another ``model`` of the same kind.
The resolved spec is written beside every run.

Precision: fp32 first, as the pointwise references (pyterrier_t5, TWOLAR, sentence-transformers,
lightning-ir) run; ``dtype: bf16`` is the speed option (scores keep float32 heads, see
:mod:`rankstack.rerank.runtime`). The LLM presets name no dtype, so the HF backend's fp32
applies (rank_llm / vLLM run the checkpoints' own bf16 / fp16: ``settings: {dtype: bf16}``),
and they carry no backend-only setting but RankVicuna's ``use_chat_template: false``, so
``backend: openai`` (a vLLM server) works with the RankZephyr and RankGPT presets as they are.

:data:`REFERENCES` names, per preset, the reference code its inputs are checked against
(``tests/test_presets.py`` builds the exact inputs from those construction rules).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # ---- listwise LLMs -----------------------------------------------------------------------
    "rankzephyr": {
        "family": "llm-listwise", "backend": "hf", "model": "castorini/rank_zephyr_7b_v1_full",
        "settings": {"template": "rankzephyr", "window": 20, "stride": 10, "passes": 1,
                     "passages": "rank_llm", "context_size": 4096, "id_parsing": "all",
                     "window_policy": "rank_llm"},
    },
    "rankvicuna": {
        "family": "llm-listwise", "backend": "hf", "model": "castorini/rank_vicuna_7b_v1",
        "settings": {"template": "rankvicuna", "window": 20, "stride": 10, "passes": 1,
                     "passages": "rank_llm", "context_size": 4096, "id_parsing": "all",
                     "window_policy": "rank_llm", "use_chat_template": False},
    },
    "rankgpt": {
        "family": "llm-listwise", "backend": "openai", "model": "gpt-3.5-turbo",
        "settings": {"template": "rankgpt", "window": 20, "stride": 10, "passes": 1,
                     "passages": "rankgpt", "id_parsing": "all", "window_policy": "rankgpt"},
    },
    # ---- T5 pointwise ------------------------------------------------------------------------
    "monot5": {
        # pyterrier_t5 MonoT5ReRanker: no query cap, the prompt kept, 512 positions
        "family": "monot5", "model": "castorini/monot5-base-msmarco",
        "settings": {"query_length": 512, "doc_length": 512, "max_length": 512,
                     "truncation": "budgets", "dtype": "fp32"},
    },
    "twolar": {
        # TWOLAR eval_trec_dl.py: tokenizer(prompt, truncation=True, max_length=500)
        "family": "twolar", "model": "Dundalia/TWOLAR-large",
        "settings": {"query_length": 512, "doc_length": 512, "max_length": 500,
                     "truncation": "tail", "dtype": "fp32"},
    },
    "rankt5": {
        "family": "rankt5", "model": "Soyoung97/RankT5-base",
        "settings": {"query_length": 512, "doc_length": 512, "max_length": 512,
                     "truncation": "budgets", "dtype": "fp32"},
    },
    # ---- decoder pointwise / dense -----------------------------------------------------------
    "rankllama": {
        # tevatron examples/rankllama: q_max_len 32, p_max_len 164 (161 incl. "document: ")
        "family": "rankllama", "model": "meta-llama/Llama-2-7b-hf",
        "settings": {"lora": "castorini/rankllama-v1-7b-lora-passage", "query_length": 32,
                     "doc_length": 161, "append_eos": False, "query_template": "query: {query}",
                     "doc_template": "document: {doc}", "dtype": "fp32"},
    },
    "repllama": {
        # tevatron examples/repllama + the model card: "query: {q}</s>" / "passage: {p}</s>",
        # last-token (EOS) pooling, L2-normalised (cosine); encode.py's 512-token inputs
        "family": "bi-encoder", "model": "meta-llama/Llama-2-7b-hf",
        "settings": {"lora": "castorini/repllama-v1-7b-lora-passage", "pooling": "last_token",
                     "similarity": "cosine", "append_eos": True, "query_prefix": "query: ",
                     "passage_prefix": "passage: ", "prefix_in_budget": True,
                     "query_length": 509, "doc_length": 509, "max_length": 512,
                     "padding_side": "right", "dtype": "fp32"},
    },
    # ---- encoder cross-encoders --------------------------------------------------------------
    "monoelectra": {
        # lightning-ir MonoModel (Rank-DistiLLM): the checkpoint's query/doc lengths, raw logit
        "family": "lightning-ir", "model": "webis/monoelectra-base",
        "settings": {"dtype": "fp32"},
    },
    "ms-marco-minilm": {
        # sentence-transformers CrossEncoder: tokenizer(q, p, truncation=True, max_length=512)
        "family": "cross-encoder", "model": "cross-encoder/ms-marco-MiniLM-L6-v2",
        "settings": {"truncation": "longest_first", "max_length": 512, "dtype": "fp32"},
    },
    # ---- sentence-transformers bi-encoders ---------------------------------------------------
    "all-minilm": {
        # max_seq_length 256 comes from the model's sentence_bert_config.json
        "family": "bi-encoder", "model": "bundled:all-MiniLM-L6-v2",
        "settings": {"pooling": "mean", "similarity": "cosine", "dtype": "fp32"},
    },
    "mpnet": {
        "family": "bi-encoder", "model": "sentence-transformers/all-mpnet-base-v2",
        "settings": {"pooling": "mean", "similarity": "cosine", "dtype": "fp32"},
    },
    "nomic-embed": {
        "family": "bi-encoder", "model": "nomic-ai/nomic-embed-text-v1.5",
        "settings": {"pooling": "mean", "similarity": "cosine",
                     "query_prefix": "search_query: ", "passage_prefix": "search_document: ",
                     "trust_remote_code": True, "dtype": "fp32"},
    },
}

#: PE-Rank (Liu et al. 2024; pe_rank/src/ranker.py ListwiseEmbeddingRanker + evaluate.py): the
#: reference prompt ("Passage {i}: [<PLACEHOLDER>]" blocks), BOS forced before the first output
#: passage, raw hidden states scored against the projected embeddings (no normalisation), the
#: encoder at 512 tokens (mean pooling, L2-normalised), windows 20 / stride 10. The published
#: checkpoint's directory layout is read by rankstack.llm.pe_rank.published. The reference runs
#: fp16 on CUDA; fp32 here (CPU-safe), override with settings.dtype=fp16.
PRESETS["pe-rank"] = {
    "family": "pe-rank",
    "model": "liuqi6777/pe-rank-mistral-jina",
    "settings": {"window": 20, "stride": 10, "dtype": "fp32", "layout": "reference",
                 "normalize_hidden": False, "bos_before_output": True,
                 "max_passage_tokens": 512},
}

#: preset -> the reference implementation (repository: file) its construction rules come from
REFERENCES: dict[str, str] = {
    "rankzephyr": "castorini/rank_llm (2024): rerank/listwise/zephyr_reranker.py, "
                  "rank_listwise_os_llm.py, listwise_rankllm.py",
    "rankvicuna": "castorini/rank_llm (2024): rerank/listwise/vicuna_reranker.py, "
                  "rank_listwise_os_llm.py (FastChat vicuna_v1.1)",
    "rankgpt": "sunnweiwei/RankGPT: rank_gpt.py",
    "monot5": "terrierteam/pyterrier_t5: pyterrier_t5/__init__.py (MonoT5ReRanker)",
    "twolar": "Dundalia/TWOLAR: eval_trec_dl.py",
    "rankt5": "Soyoung97/RankT5 model card; lightning-ir register_external_models.py",
    "rankllama": "texttron/tevatron: examples/rankllama/data.py",
    "repllama": "texttron/tevatron: examples/repllama/ (+ model card)",
    "monoelectra": "webis-de/lightning-ir: models/cross_encoders/mono.py, "
                   "cross_encoder/cross_encoder_tokenizer.py",
    "ms-marco-minilm": "UKPLab/sentence-transformers: cross_encoder/CrossEncoder.py",
    "all-minilm": "UKPLab/sentence-transformers: SentenceTransformer (Transformer, Pooling, "
                  "Normalize modules)",
    "mpnet": "UKPLab/sentence-transformers: SentenceTransformer",
    "nomic-embed": "nomic-ai/nomic-embed-text-v1.5 model card (sentence-transformers usage)",
    "pe-rank": "liuqi6777/pe_rank: src/ranker.py (ListwiseEmbeddingRanker), evaluate.py",
}

#: presets whose golden test lives with their family's tests rather than in tests/test_presets.py
GOLDEN_TESTS_ELSEWHERE: dict[str, str] = {
    "pe-rank": "tests/test_pe_rank_published.py",
}
