"""Golden tests per preset: the exact prompt / token ids / encoder inputs a preset builds equal
what the reference implementation builds for the same (query, passages).

Expected values are written from each reference's construction rules (the file is named in
each test), on offline tokenizers: the bundled MiniLM WordPiece tokenizer and the tiny models
of tests/tiny_models.py. A preset's published ``model`` is replaced by a tiny model of the same
kind (``{"preset": name, "model": tiny}``), so what is checked is the preset's construction.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rankstack.llm.passages import (  # noqa: E402
    build_window_prompt,
    prepare_passage,
    prepare_query,
    replace_identifiers,
)
from rankstack.llm.sliding_window import extract_ids, sliding_windows  # noqa: E402
from rankstack.records import Doc  # noqa: E402
from rankstack.rerank import presets  # noqa: E402
from rankstack.rerank.spec import load_reranker  # noqa: E402

torch.set_num_threads(1)

QUERY = "what do [2] cats eat"
DOCS = [Doc("d1", "Cats eat food and fish [3] daily.", title="Cats"),
        Doc("d2", "dogs sleep a long time"),
        Doc("d3", "The cat doesnÃ¢â‚¬â„¢t eat rain")]


def _tok(path):
    return transformers.AutoTokenizer.from_pretrained(str(path))


def test_every_preset_has_a_reference_and_a_golden_test():
    assert set(presets.PRESETS) == set(presets.REFERENCES)
    tested = {name.removeprefix("test_").split("__")[0].replace("_", "-")
              for name in globals() if name.startswith("test_") and "__" in name}
    untested = set(presets.PRESETS) - tested - set(presets.GOLDEN_TESTS_ELSEWHERE)
    assert not untested, untested
    for name, spec in presets.PRESETS.items():
        assert set(spec) <= {"family", "model", "backend", "settings"}, name


# ------------------------------------------------------------------ listwise LLMs

ZEPHYR_CHAT_TEMPLATE = (  # HuggingFaceH4/zephyr-7b-beta's, as RankZephyr's tokenizer ships it
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + "
    "message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")


@pytest.fixture(scope="module")
def tiny_zephyr(tmp_path_factory, tiny_llama_dir):
    import shutil

    out = tmp_path_factory.mktemp("tiny-zephyr") / "m"
    shutil.copytree(tiny_llama_dir, out)
    tok = _tok(out)
    tok.chat_template = ZEPHYR_CHAT_TEMPLATE
    tok.save_pretrained(out)
    return out


def _window_prompt(rr, docs):
    from rankstack.rerank.report import RerankReport

    rr._begin(RerankReport())
    return rr._window_prompt(QUERY, docs)


def rank_llm_content(doc: Doc, max_words: float) -> str:
    """rank_llm listwise_rankllm.py convert_doc_to_prompt_content (2024)."""
    import ftfy

    content = "Title: " + doc.title + " " + "Content: " + doc.text if doc.title else doc.text
    content = ftfy.fix_text(content.strip())
    content = " ".join(content.split()[: int(max_words)])
    return replace_identifiers(content)


def test_rankzephyr__prompt_and_ids(tiny_zephyr):
    """rank_llm (2024) zephyr_reranker.py + rank_listwise_os_llm.py create_prompt with FastChat's
    zephyr conversation, tokenized with special tokens (BOS) as vLLM / HF generate do."""
    rr = load_reranker({"preset": "rankzephyr", "model": str(tiny_zephyr)})
    try:
        msgs = _window_prompt(rr, DOCS)
        q = "what do (2) cats eat"
        body = "".join(f"[{i}] {rank_llm_content(d, 300 * 20 / 3)}\n"
                       for i, d in enumerate(DOCS, 1))
        user = (f"I will provide you with 3 passages, each indicated by a numerical identifier "
                f"[]. Rank the passages based on their relevance to the search query: {q}.\n"
                f"\n{body}Search Query: {q}.\nRank the 3 passages above based on their relevance "
                f"to the search query. All the passages should be included and listed using "
                f"identifiers, in descending order of relevance. The output format should be "
                f"[] > [], e.g., [2] > [1], Only respond with the ranking results, do not say "
                f"any word or explain.")
        system = ("You are RankLLM, an intelligent assistant that can rank passages based on "
                  "their relevancy to the query")
        assert msgs == [{"role": "system", "content": system}, {"role": "user", "content": user}]
        assert "(3) daily" in user and "doesn't eat" in user and "Title: Cats Content:" in user
        tok = rr.backend.tokenizer
        text = f"<|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n"
        assert tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == text
        assert rr.backend._input_ids(msgs) == tok(text).input_ids  # BOS first, once
        assert rr.backend._input_ids(msgs)[0] == tok.bos_token_id
        assert rr.backend.dtype == "fp32" and rr.window_policy == "rank_llm"
    finally:
        rr.close()


def test_rankvicuna__prompt_and_ids(tiny_llama_dir):
    """rank_llm (2024) vicuna_reranker.py (variable_passages=False) + FastChat vicuna_v1.1:
    "{system} USER: {prompt} ASSISTANT:", tokenized with BOS."""
    rr = load_reranker({"preset": "rankvicuna", "model": str(tiny_llama_dir)})
    try:
        msgs = _window_prompt(rr, DOCS[1:])
        q = "what do (2) cats eat"
        body = "".join(f"[{i}] {rank_llm_content(d, 300 * 20 / 2)}\n"
                       for i, d in enumerate(DOCS[1:], 1))
        text = ("A chat between a curious user and an artificial intelligence assistant. The "
                "assistant gives helpful, detailed, and polite answers to the user's questions. "
                f"USER: I will provide you with 2 passages, each indicated by a numerical "
                f"identifier []. Rank the passages based on their relevance to the search query: "
                f"{q}.\n\n{body}Search Query: {q}.\nRank the 2 passages above based on their "
                f"relevance to the search query. All the passages should be included and listed "
                f"using identifiers, in descending order of relevance. The output format should "
                f"be [] > [], e.g., [4] > [2], Only respond with the ranking results, do not say "
                f"any word or explain. ASSISTANT:")
        assert msgs == [{"role": "user", "content": text}]
        assert rr.backend._input_ids(msgs) == _tok(tiny_llama_dir)(text).input_ids
    finally:
        rr.close()


def test_rankgpt__messages(tiny_chat_llama):
    """RankGPT rank_gpt.py create_permutation_instruction: one user/assistant turn per passage,
    'Title: .. Content: ..' content, 300 words, no cleaning, no identifier rewrite."""
    rr = load_reranker({"preset": "rankgpt", "backend": "hf", "model": str(tiny_chat_llama)})
    try:
        msgs = _window_prompt(rr, DOCS)
        want = [{"role": "system", "content": "You are RankGPT, an intelligent assistant that "
                 "can rank passages based on their relevancy to the query."},
                {"role": "user", "content": f"I will provide you with 3 passages, each indicated "
                 f"by number identifier []. \nRank the passages based on their relevance to "
                 f"query: {QUERY}."},
                {"role": "assistant", "content": "Okay, please provide the passages."}]
        contents = ["Title: Cats Content: Cats eat food and fish [3] daily.",
                    "dogs sleep a long time", "The cat doesnÃ¢â‚¬â„¢t eat rain"]
        for i, c in enumerate(contents, 1):
            want += [{"role": "user", "content": f"[{i}] {c}"},
                     {"role": "assistant", "content": f"Received passage [{i}]."}]
        want.append({"role": "user", "content": f"Search Query: {QUERY}. \nRank the 3 passages "
                     "above based on their relevance to the search query. The passages should "
                     "be listed in descending order using identifiers. The most relevant "
                     "passages should be listed first. The output format should be [] > [], "
                     "e.g., [1] > [2]. Only response the ranking results, do not say any word "
                     "or explain."})
        assert msgs == want
        assert rr.window_policy == "rankgpt" and rr.id_parsing == "all"
    finally:
        rr.close()


def test_reference_word_caps_shrinking_and_parsing():
    long_doc = Doc("x", " ".join(f"w{i}" for i in range(400)))
    # rank_llm: 300 * (20 / window) words; RankGPT: 300 words whatever the window
    assert len(prepare_passage(long_doc, "rank_llm", 300 * 20 / 20).split()) == 300
    assert len(prepare_passage(long_doc, "rank_llm", 300 * 20 / 15).split()) == 400
    assert len(prepare_passage(long_doc, "rankgpt", 300).split()) == 300
    assert prepare_query("q [12] x", "rank_llm") == "q (12) x"
    assert prepare_query("q [12] x", "rankgpt") == "q [12] x"

    # create_prompt's shrink rule: max_length -= max(1, excess // (n * 4)) until it fits
    def render(q, ps):
        return " ".join([q, *ps])

    docs = [long_doc] * 4
    w = build_window_prompt(render, "q", docs, "rank_llm", count=lambda s: len(s.split()),
                            context_size=1000, answer_tokens=10)
    cap, n_words = 300 * 20 / 4, lambda c: 1 + 4 * min(400, int(c))
    expect_shrinks = 0
    while n_words(cap) > 990:
        cap -= max(1, (n_words(cap) - 990) // 16)
        expect_shrinks += 1
    assert (w.max_words, w.shrinks, w.tokens) == (cap, expect_shrinks, n_words(cap))
    # rank_llm / RankGPT _clean_response: every digit run counts, bracketed or not
    assert extract_ids("[3] > 1 > [2]", "all") == [3, 1, 2]
    assert extract_ids("[3] > 1 > [2]") == [3, 2]  # rankstack's bracketed-first option


def _rank_llm_windows(n, window, stride):
    """rank_llm listwise_rankllm.py (2025+) _sliding_windows_batched_async: the first window
    ends at min(rank_end, n); the next is stride higher while the one just done did not start
    at rank_start (rank_start 0, rank_end >= n). Its older single-request loop (``while end_pos
    > rank_start and start_pos + step != rank_start``) ran no window at all for n = window -
    stride; the batched loop fixed that."""
    out, end = [], n
    start = max(end - window, 0)
    while end > start:
        out.append((start, end))
        if start == 0:
            break
        end, start = end - stride, max(start - stride, 0)
    return out


def _rankgpt_windows(n, window, stride):
    """RankGPT rank_gpt.py sliding_windows loop."""
    out, end, start = [], n, n - window
    while end > 0:
        start = max(start, 0)
        out.append((start, end))
        end, start = end - stride, start - stride
    return out


@pytest.mark.parametrize("window,stride", [(20, 10), (20, 5), (4, 3), (5, 5), (10, 7)])
def test_sliding_windows_follow_the_references(window, stride):
    for n in range(1, 64):
        assert sliding_windows(n, window, stride) == _rank_llm_windows(n, window, stride), n
        assert sliding_windows(n, window, stride, "rankgpt") == _rankgpt_windows(n, window,
                                                                                stride), n


# ------------------------------------------------------------------ T5 pointwise

def _scorer(spec):
    rr = load_reranker(spec)
    return rr, rr.scorer


LONG = " ".join(["cats eat food and dogs sleep"] * 120)  # 720 words


def test_monot5__inputs(tiny_t5_dir):
    """pyterrier_t5 MonoT5ReRanker: 'Query: q Document: d' (its </s> chopped) cut to
    n_positions - len('Relevant:</s>'), then 'Relevant:</s>' appended; no query cap."""
    _, s = _scorer({"preset": "monot5", "model": str(tiny_t5_dir)})
    tok = _tok(tiny_t5_dir)
    long_q = " ".join(["what do cats eat"] * 20)  # 80 words: past the old 32-token cap
    prompt = tok("Relevant:").input_ids
    for q, d in [(QUERY, DOCS[0].text), (long_q, "cats eat"), (QUERY, LONG)]:
        enc = tok(f"Query: {q} Document: {d}").input_ids[:-1][: 512 - len(prompt)]
        assert s._encode([q], [d])[0].input_ids == enc + prompt
    assert s.runtime.dtype == "fp32"


def test_twolar__inputs(tiny_t5_dir):
    """TWOLAR eval_trec_dl.py: tokenizer(f'Query: {q} Document: {d} Relevant: ',
    truncation=True, max_length=500)."""
    _, s = _scorer({"preset": "twolar", "model": str(tiny_t5_dir)})
    tok = _tok(tiny_t5_dir)
    for q, d in [(QUERY, DOCS[0].text), (QUERY, LONG)]:
        want = tok([f"Query: {q} Document: {d} Relevant: "], truncation=True,
                   max_length=500).input_ids[0]
        assert s._encode([q], [d])[0].input_ids == want
    assert len(want) == 500 and "Relevant" not in tok.decode(want)  # their cut loses it


def test_rankt5__inputs(tiny_t5_dir):
    """RankT5 model card / lightning-ir (no query/doc caps): 'Query: q Document: d</s>'."""
    _, s = _scorer({"preset": "rankt5", "model": str(tiny_t5_dir)})
    tok = _tok(tiny_t5_dir)
    long_q = " ".join(["what do cats eat"] * 20)
    assert (s._encode([long_q], ["cats eat"])[0].input_ids
            == tok(f"Query: {long_q} Document: cats eat").input_ids)


# ------------------------------------------------------------------ decoders

def test_rankllama__inputs(tiny_llama_cls_dir):
    """tevatron examples/rankllama/data.py: [bos] encode('query: ' + q)[:32]
    [bos] encode('document: ' + d)[:164 - 3], no </s>."""
    _, s = _scorer({"preset": "rankllama", "model": str(tiny_llama_cls_dir),
                    "settings": {"lora": None}})
    tok = _tok(tiny_llama_cls_dir)
    long_q = " ".join(["what do cats eat"] * 20)
    for q, d in [(QUERY, DOCS[0].text), (long_q, LONG)]:
        qi = tok.encode("query: " + q, add_special_tokens=False, max_length=32,
                        truncation=True)
        di = tok.encode("document: " + d, add_special_tokens=False, max_length=161,
                        truncation=True)
        assert s._encode([q], [d])[0].input_ids == [tok.bos_token_id, *qi,
                                                    tok.bos_token_id, *di]


def test_repllama__inputs(tiny_llama_dir):
    """tevatron examples/repllama + model card: tokenizer(f'query: {q}</s>'),
    tokenizer(f'passage: {p}</s>'); 512-token inputs (encode.py), prefix inside the budget."""
    _, s = _scorer({"preset": "repllama", "model": str(tiny_llama_dir),
                    "settings": {"lora": None}})
    tok = _tok(tiny_llama_dir)
    enc = s.encoder
    assert enc.encode_single([QUERY], kind="queries", prefix="query: ",
                             suffix_ids=s.suffix_ids)[0].input_ids == tok(
        f"query: {QUERY}</s>").input_ids
    got = enc.encode_single([LONG], kind="passages", prefix="passage: ",
                            suffix_ids=s.suffix_ids)[0].input_ids
    body = tok.encode("passage: " + LONG, add_special_tokens=False)[:509]
    assert got == [tok.bos_token_id, *body, tok.eos_token_id]
    assert s.pooling == "last_token" and s.similarity == "cosine"
    assert (s.query_prefix, s.passage_prefix) == ("query: ", "passage: ")


# ------------------------------------------------------------------ encoder cross-encoders

def test_monoelectra__inputs(tiny_lightning_ir_dir):
    """lightning-ir cross_encoder_tokenizer.py: query cut to the checkpoint's query_length,
    doc to its doc_length (decoded, re-tokenized), then the tokenizer's pair layout."""
    _, s = _scorer({"preset": "monoelectra", "model": str(tiny_lightning_ir_dir)})
    tok = _tok(tiny_lightning_ir_dir)
    long_q = " ".join(["what do cats eat"] * 5)

    def cut(t, n):
        return tok.decode(tok(t, add_special_tokens=False, truncation=True,
                              max_length=n).input_ids)

    for q, d in [(QUERY, DOCS[0].text), (long_q, LONG)]:
        want = tok(cut(q, 8), cut(d, 24))  # the tiny checkpoint's query_length / doc_length
        got = s.encoder.encode_pairs([q], [d])[0]
        assert got.input_ids == want.input_ids
        assert got.token_type_ids == want.token_type_ids
    assert s.score_kind == "logit"


def test_ms_marco_minilm__inputs(tiny_bert_dir):
    """sentence-transformers CrossEncoder: tokenizer(q, p, truncation=True, max_length=512),
    i.e. longest_first (a long query keeps more than 32 tokens)."""
    _, s = _scorer({"preset": "ms-marco-minilm", "model": str(tiny_bert_dir)})
    tok = _tok(tiny_bert_dir)
    long_q = " ".join(["what do cats eat"] * 100)
    for q, d in [(QUERY, DOCS[0].text), (long_q, LONG), (long_q, "cats eat")]:
        want = tok(q, d, truncation=True, max_length=512)
        got = s.encoder.encode_pairs([q], [d])[0]
        assert got.input_ids == want.input_ids and got.token_type_ids == want.token_type_ids


# ------------------------------------------------------------------ sentence-transformers

def test_all_minilm__matches_sentence_transformers():
    """sentence-transformers SentenceTransformer(all-MiniLM-L6-v2): max_seq_length 256 from
    sentence_bert_config.json, mean pooling, normalised; cosine = its embeddings' dot."""
    st = pytest.importorskip("sentence_transformers")
    from rankstack.rerank.defaults import default_model_path

    _, s = _scorer({"preset": "all-minilm"})
    assert s.encoder.max_length == 256
    texts = [QUERY, DOCS[0].text, LONG]
    ref = st.SentenceTransformer(default_model_path(), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    got = s.encode_passages(texts)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    tok = _tok(default_model_path())
    assert s.encoder.encode_single([LONG])[0].input_ids == tok(
        LONG, truncation=True, max_length=256).input_ids


def _st_dir(tmp_path, tiny_bert_dir, max_seq_length):
    import json
    import shutil

    d = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, d)
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (d / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": False}))
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}]))
    return d


def test_mpnet__matches_sentence_transformers(tmp_path, tiny_bert_dir):
    """all-mpnet-base-v2's recipe (mean pooling, Normalize, its sentence_bert_config
    max_seq_length 384) on a tiny model in the sentence-transformers layout."""
    st = pytest.importorskip("sentence_transformers")
    d = _st_dir(tmp_path, tiny_bert_dir, 384)
    _, s = _scorer({"preset": "mpnet", "model": str(d)})
    assert s.encoder.max_length == 384
    texts = [QUERY, LONG]
    ref = st.SentenceTransformer(str(d), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(s.encode_passages(texts), ref, atol=2e-5)


def test_nomic_embed__prefixes(tmp_path, tiny_bert_dir):
    """nomic-embed-text-v1.5 model card: 'search_query: ' / 'search_document: ' prefixes,
    mean pooling, normalised (sentence-transformers encode of the prefixed texts)."""
    st = pytest.importorskip("sentence_transformers")
    d = _st_dir(tmp_path, tiny_bert_dir, 8192)
    _, s = _scorer({"preset": "nomic-embed", "model": str(d),
                    "settings": {"trust_remote_code": False}})
    model = st.SentenceTransformer(str(d), device="cpu")
    np.testing.assert_allclose(s.encode_queries([QUERY]),
                               model.encode(["search_query: " + QUERY]), atol=2e-5)
    np.testing.assert_allclose(s.encode_passages([DOCS[1].text]),
                               model.encode(["search_document: " + DOCS[1].text]), atol=2e-5)


def test_chat_prompt_bos_is_added_once(tiny_chat_llama, tiny_zephyr):
    """BOS before a chat-templated prompt: added when the template does not write it (Zephyr),
    never doubled when it does (a template starting with <s>); add_bos=False turns it off."""
    from rankstack.llm.hf import HFBackend

    msgs = [{"role": "user", "content": "cats"}]
    for path in (tiny_chat_llama, tiny_zephyr):
        ids = HFBackend(str(path))._input_ids(msgs)
        assert ids[0] == 1 and ids[1] != 1, path  # <s> = 1 in the tiny Llama vocabulary
    assert HFBackend(str(tiny_zephyr), add_bos=False)._input_ids(msgs)[0] != 1
