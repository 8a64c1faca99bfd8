"""T5 (monoT5, TWOLAR, RankT5) and decoder (RankLLaMA, yes/no) re-ranker families.

Every family runs end to end on tiny random models saved to disk and loaded through
``from_pretrained``; scores are checked against a direct forward pass of the same model on
the prompt written out by hand (format, token ids, score formula), and for padding (batch 1
vs 8), input order and truncation.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rankstack.errors import ConfigError  # noqa: E402
from rankstack.rerank.registry import SCORERS, scorer_class  # noqa: E402

# Every word below is one token of the tiny tokenizers (see tiny_models.WORDS), so a budget
# of k passage tokens keeps exactly the first k words.
QUERIES = ["what do cats eat", "capital of France", "python code", "what do cats eat",
           "how long do dogs sleep", "capital of France", "music", "weather today"]
PASSAGES = [
    "cats eat food",
    "Paris is the capital of France and a city on the river Seine",
    "the river Seine",
    "dogs sleep",
    "music guitar piano " * 12 + "long",
    "Berlin is the capital of Germany",
    "x",
    "rain today and sun tomorrow in Paris",
]
T5_FAMILIES = ["monot5", "twolar", "rankt5"]
ALL_FAMILIES = [*T5_FAMILIES, "rankllama", "yes-no"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def paths(tiny_t5_dir, tiny_llama_dir, tiny_llama_cls_dir):
    return {"monot5": tiny_t5_dir, "twolar": tiny_t5_dir, "rankt5": tiny_t5_dir,
            "rankllama": tiny_llama_cls_dir, "yes-no": tiny_llama_dir}


def load(family, path, **kw):
    kw.setdefault("dtype", "fp32")
    return scorer_class(family).from_pretrained(str(path), **kw)


@pytest.fixture(scope="module")
def scorers(paths):
    return {f: load(f, paths[f], batch_size=8) for f in ALL_FAMILIES}


# ------------------------------------------------------------------ manual references


def t5_manual(path, prompts, token_ids):
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    rows = []
    for p in prompts:
        ids = torch.tensor([tok(p).input_ids])
        start = torch.tensor([[model.config.decoder_start_token_id]])
        with torch.no_grad():
            rows.append(model(input_ids=ids, decoder_input_ids=start).logits[0, 0, token_ids])
    return torch.stack(rows).double()


def expected_t5(family, path, queries, passages):
    tok = transformers.AutoTokenizer.from_pretrained(path)
    true_id, false_id, extra10 = tok.convert_tokens_to_ids(["▁true", "▁false", "<extra_id_10>"])
    if family == "rankt5":
        prompts = [f"Query: {q} Document: {d}" for q, d in zip(queries, passages, strict=True)]
        return t5_manual(path, prompts, [extra10])[:, 0].numpy()
    suffix = "Relevant:" if family == "monot5" else "Relevant: "
    prompts = [f"Query: {q} Document: {d} {suffix}" for q, d in zip(queries, passages, strict=True)]
    lg = t5_manual(path, prompts, [true_id, false_id])
    if family == "monot5":
        return torch.log_softmax(lg, -1)[:, 0].numpy()
    return (lg[:, 0] - lg[:, 1]).numpy()


def expected_rankllama(path, queries, passages, append_eos=False, doc_length=161):
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    model.config.pad_token_id = None  # one unpadded row: pool at the very last token
    out = []
    for q, d in zip(queries, passages, strict=True):
        # tevatron examples/rankllama/data.py (RerankerInferencePreProcessor + Dataset):
        # [bos] encode('query: ' + q)[:32] [bos] encode('document: ' + d)[:164 - 3], no </s>;
        # append_eos: the model card's tokenizer(f'query: {q}', f'document: {d}</s>')
        qi = tok.encode(f"query: {q}", add_special_tokens=False, max_length=32, truncation=True)
        di = tok.encode(f"document: {d}", add_special_tokens=False, max_length=doc_length,
                        truncation=True)
        ids = [tok.bos_token_id, *qi, tok.bos_token_id, *di]
        if append_eos:
            ids.append(tok.eos_token_id)
            assert ids == tok(f"query: {q}", f"document: {d}").input_ids + [tok.eos_token_id]
        with torch.no_grad():  # one row, no padding: the last token is the real last token
            out.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
    return np.array(out)


def expected_yes_no(path, queries, passages, score="logit_diff"):
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    yes, no = tok.convert_tokens_to_ids(["▁Yes", "▁No"])
    out = []
    for q, d in zip(queries, passages, strict=True):
        prompt = (f"Passage: {d}\nQuery: {q}\nDoes the passage answer the query? "
                  "Answer 'Yes' or 'No'.\nAnswer:")
        ids = tok(prompt).input_ids
        assert ids[0] == tok.bos_token_id
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([ids])).logits[0, -1, [yes, no]].double()
        out.append((lg[0] - lg[1]).item() if score == "logit_diff"
                   else torch.log_softmax(lg, -1)[0].item())
    return np.array(out)


def expected(family, path, queries, passages):
    if family in T5_FAMILIES:
        return expected_t5(family, path, queries, passages)
    if family == "rankllama":
        return expected_rankllama(path, queries, passages)
    return expected_yes_no(path, queries, passages)


# ------------------------------------------------------------------ tests


def test_families_are_registered_with_score_kinds():
    kinds = {"monot5": "log_prob", "twolar": "logit_diff", "rankt5": "logit",
             "rankllama": "logit", "yes-no": "logit_diff"}
    for family, kind in kinds.items():
        assert family in SCORERS
        cls = scorer_class(family)
        assert cls.family == family and cls.score_kind == kind


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_scores_equal_a_manual_forward_pass(family, scorers, paths):
    got = scorers[family].score_pairs(QUERIES, PASSAGES)
    want = expected(family, paths[family], QUERIES, PASSAGES)
    assert got.dtype == np.float32 and got.shape == (len(QUERIES),)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert np.ptp(got) > 1e-3  # distinct scores, so the order checks below mean something


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_batch_size_and_input_order_do_not_change_scores(family, scorers, paths):
    s8 = scorers[family]
    ref = s8.score_pairs(QUERIES, PASSAGES)
    s1 = load(family, paths[family], batch_size=1)
    np.testing.assert_allclose(s1.score_pairs(QUERIES, PASSAGES), ref, atol=1e-5, rtol=1e-5)
    s3 = load(family, paths[family], batch_size=3)  # partial last batch, mixed lengths
    np.testing.assert_allclose(s3.score_pairs(QUERIES, PASSAGES), ref, atol=1e-5, rtol=1e-5)
    perm = np.random.default_rng(0).permutation(len(QUERIES))
    shuffled = s8.score_pairs([QUERIES[i] for i in perm], [PASSAGES[i] for i in perm])
    np.testing.assert_allclose(shuffled, ref[perm], atol=1e-5, rtol=1e-5)
    assert s8.score_pairs([], []).shape == (0,)


def test_token_ids_come_from_the_tokenizer(scorers, tiny_t5_dir, tiny_llama_dir):
    t5 = transformers.AutoTokenizer.from_pretrained(tiny_t5_dir)
    ll = transformers.AutoTokenizer.from_pretrained(tiny_llama_dir)
    true_false = t5.convert_tokens_to_ids(["▁true", "▁false"])
    assert scorers["monot5"].token_ids == true_false
    assert scorers["twolar"].token_ids == true_false
    assert scorers["rankt5"].token_ids == t5.convert_tokens_to_ids(["<extra_id_10>"])
    assert scorers["yes-no"].token_ids == ll.convert_tokens_to_ids(["▁Yes", "▁No"])
    # the tiny vocab is not T5's: ids differ from T5's 1176/6136, so nothing is hard-coded
    assert true_false != [1176, 6136]


def test_configured_tokens(tiny_t5_dir, tiny_llama_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_t5_dir)
    t, f, e5 = tok.convert_tokens_to_ids(["▁true", "▁false", "<extra_id_5>"])
    # ids and swapped names: swapping true/false negates TWOLAR's difference
    a = load("twolar", tiny_t5_dir, true_token=t, false_token=f).score_pairs(QUERIES, PASSAGES)
    b = load("twolar", tiny_t5_dir, true_token="▁false", false_token="▁true").score_pairs(
        QUERIES, PASSAGES)
    np.testing.assert_allclose(a, -b, atol=1e-5)
    r = load("rankt5", tiny_t5_dir, score_token="<extra_id_5>")
    assert r.token_ids == [e5]
    np.testing.assert_allclose(
        r.score_pairs(QUERIES[:2], PASSAGES[:2]),
        t5_manual(tiny_t5_dir, [f"Query: {q} Document: {d}" for q, d in
                                zip(QUERIES[:2], PASSAGES[:2], strict=True)], [e5])[:, 0].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="not one token"):
        load("monot5", tiny_t5_dir, true_token="xyzzy plugh")
    with pytest.raises(ConfigError, match="same id"):
        load("monot5", tiny_t5_dir, true_token="▁true", false_token="▁true")
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        load("rankt5", tiny_t5_dir, score_token=10**6)
    with pytest.raises(ConfigError, match="same token id"):
        load("yes-no", tiny_llama_dir, yes_token="▁Yes", no_token="▁Yes")


def test_yes_no_log_prob_option(tiny_llama_dir):
    s = load("yes-no", tiny_llama_dir, score="log_prob", batch_size=3)
    assert s.score_kind == "log_prob"
    got = s.score_pairs(QUERIES, PASSAGES)
    np.testing.assert_allclose(got, expected_yes_no(tiny_llama_dir, QUERIES, PASSAGES,
                                                    "log_prob"), atol=1e-5)
    assert (got <= 0).all()
    with pytest.raises(ConfigError, match="logit_diff"):
        load("yes-no", tiny_llama_dir, score="prob")
    with pytest.raises(ConfigError, match="chat template"):
        load("yes-no", tiny_llama_dir, chat=True)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_truncation_keeps_the_query_and_cuts_the_passage(family, paths):
    long_doc = " ".join(["cats eat food and dogs sleep"] * 40)  # 240 one-token words
    q = "how long do dogs sleep"
    s = load(family, paths[family], doc_length=7, batch_size=2)
    got = s.score_pairs([q, q], [long_doc, "cats eat"])
    assert s.counts.passages == 1 and s.counts.queries == 0
    kept = " ".join(long_doc.split()[:7])
    want = (expected_rankllama(paths[family], [q, q], [long_doc, "cats eat"], doc_length=7)
            if family == "rankllama"  # tevatron's budget counts the "document: " prefix
            else expected(family, paths[family], [q, q], [kept, "cats eat"]))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

    # max_length binds before doc_length: the passage gives up tokens, the query stays whole
    s = load(family, paths[family], max_length=40, batch_size=2)
    enc = s._encode([q], [long_doc])[0]
    assert len(enc) <= 40
    text = s.tokenizer.decode(enc.input_ids)
    assert q in text and "cats eat food" in text
    assert len(enc) >= 39  # the passage fills what the query and template leave
    tail = {"monot5": "Relevant:", "twolar": "Relevant:", "yes-no": "Answer:"}.get(family)
    if tail:  # the template's end survives the cut
        assert text.replace("</s>", "").rstrip().endswith(tail)

    # an over-long query is cut to its own budget, never the template (RankLLaMA: tevatron's
    # query budget includes the "query: " prefix)
    s = load(family, paths[family], query_length=3 + (family == "rankllama") * 2)
    enc = s._encode(["what do cats eat food today"], ["dogs"])[0]
    text = s.tokenizer.decode(enc.input_ids)
    assert "what do cats" in text and "eat food today" not in text
    assert s.counts.queries == 1


def test_rankllama_pad_id_never_ends_a_row(tiny_llama_cls_dir, tmp_path):
    from tiny_models import make_tiny_llama

    # tokenizer whose pad token is </s>: padding with it would pool one token early
    p = make_tiny_llama(tmp_path / "pad-eos", head="seq-cls", pad_token="</s>")
    s = load("rankllama", p, batch_size=8, append_eos=True)
    assert s.pad_token_id != s.tokenizer.eos_token_id
    np.testing.assert_allclose(s.score_pairs(QUERIES, PASSAGES),
                               expected_rankllama(p, QUERIES, PASSAGES, append_eos=True),
                               atol=1e-5)

    # without the eos suffix a passage may end in the pad id: that batch is padded otherwise
    s = load("rankllama", tiny_llama_cls_dir, append_eos=False, batch_size=8)
    last = s.tokenizer("document: cats eat food", add_special_tokens=False).input_ids[-1]
    s.pad_token_id = last
    s.model.config.pad_token_id = last
    got = s.score_pairs(QUERIES[:3], PASSAGES[:3])
    ref = load("rankllama", tiny_llama_cls_dir, append_eos=False, batch_size=1)
    np.testing.assert_allclose(got, ref.score_pairs(QUERIES[:3], PASSAGES[:3]), atol=1e-5)


def test_bad_templates_and_budgets(tiny_t5_dir, tiny_llama_cls_dir):
    with pytest.raises(ConfigError, match="exactly once"):
        load("monot5", tiny_t5_dir, template="Query: {query} Relevant:")
    with pytest.raises(ConfigError, match="exactly once"):
        load("rankllama", tiny_llama_cls_dir, doc_template="document:")
    with pytest.raises(ConfigError, match="no room"):
        load("monot5", tiny_t5_dir, max_length=8)  # the template alone is 7 tokens
    s = load("monot5", tiny_t5_dir, max_length=9)
    enc = s._encode(["what do cats eat"], ["cats eat food"])[0]  # one query, one passage token
    assert s.tokenizer.decode(enc.input_ids) == "Query: what Document: cats Relevant:</s>"
    with pytest.raises(ValueError, match="2 queries but 1 passages"):
        s.score_pairs(["a", "b"], ["c"])
    with pytest.raises(ConfigError, match="batch_size"):
        load("monot5", tiny_t5_dir, batch_size=0)


def test_custom_template_is_used(tiny_t5_dir):
    s = load("monot5", tiny_t5_dir, template="Question: {query} Passage: {doc} Relevant:")
    got = s.score_pairs(QUERIES[:2], PASSAGES[:2])
    tok = transformers.AutoTokenizer.from_pretrained(tiny_t5_dir)
    ids = tok.convert_tokens_to_ids(["▁true", "▁false"])
    lg = t5_manual(tiny_t5_dir, [f"Question: {q} Passage: {d} Relevant:" for q, d in
                                 zip(QUERIES[:2], PASSAGES[:2], strict=True)], ids)
    np.testing.assert_allclose(got, torch.log_softmax(lg, -1)[:, 0].numpy(), atol=1e-5)


def test_bf16_runs_close_to_fp32(scorers, paths):
    s = load("monot5", paths["monot5"], dtype="bf16")
    assert s.model.dtype == torch.bfloat16
    got = s.score_pairs(QUERIES, PASSAGES)
    assert np.isfinite(got).all()
    ref = scorers["monot5"].score_pairs(QUERIES, PASSAGES)
    assert np.corrcoef(got, ref)[0, 1] > 0.9


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_reranker_from_pretrained_end_to_end(family, paths, scorers):
    from rankstack.records import Doc, Query, Ranking, Run
    from rankstack.rerank.reranker import Reranker

    qids = ["q1", "q2"]
    queries = {"q1": Query("q1", QUERIES[0]), "q2": Query("q2", QUERIES[1])}
    docs = {f"d{i}": Doc(f"d{i}", p) for i, p in enumerate(PASSAGES)}
    run = Run({q: Ranking.from_scores(q, {f"d{i}": float(-i) for i in range(len(PASSAGES))},
                                      "bm25") for q in qids}, "bm25")
    rr = Reranker.from_pretrained(str(paths[family]), family=family, dtype="fp32",
                                  batch_size=3, show_progress=False)
    assert rr.score_kind == scorers[family].score_kind
    out = rr.rerank(run, queries, docs)
    for q in qids:
        want = scorers[family].score_pairs([queries[q].text] * len(PASSAGES), PASSAGES)
        got = out[q].scores()
        np.testing.assert_allclose([got[f"d{i}"] for i in range(len(PASSAGES))], want,
                                   atol=1e-5)
        assert out[q].doc_ids == sorted(got, key=lambda d: (-got[d], d))
        assert out[q].scorer == str(paths[family])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated HF property
def test_rankllama_lora_adapter_is_merged(tiny_llama_cls_dir, tmp_path):
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_llama_cls_dir)
    cfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=4, lora_alpha=8,
                          target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    lora_model = peft.get_peft_model(base, cfg)
    lora_model.save_pretrained(tmp_path / "adapter")
    merged = lora_model.merge_and_unload().eval()
    merged.save_pretrained(tmp_path / "merged")
    transformers.AutoTokenizer.from_pretrained(tiny_llama_cls_dir).save_pretrained(
        tmp_path / "merged")

    s = load("rankllama", tiny_llama_cls_dir, lora=str(tmp_path / "adapter"), batch_size=4)
    assert s.name == str(tmp_path / "adapter")
    got = s.score_pairs(QUERIES, PASSAGES)
    np.testing.assert_allclose(got, expected_rankllama(tmp_path / "merged", QUERIES, PASSAGES),
                               atol=1e-5)
    plain = load("rankllama", tiny_llama_cls_dir).score_pairs(QUERIES, PASSAGES)
    assert np.abs(got - plain).max() > 1e-3  # the adapter changed the model


def test_yes_no_with_a_chat_template(tiny_llama_dir, tmp_path):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] "
                         "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}"
                         "[assistant] {% endif %}")
    tok.save_pretrained(tmp_path)
    s = load("yes-no", tiny_llama_dir, tokenizer=str(tmp_path), chat=True, system="Judge",
             batch_size=3)
    got = s.score_pairs(QUERIES, PASSAGES)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    want = []
    for q, d in zip(QUERIES, PASSAGES, strict=True):
        user = (f"Passage: {d}\nQuery: {q}\nDoes the passage answer the query? "
                "Answer 'Yes' or 'No'.\nAnswer:")
        text = f"<s>[system] Judge\n[user] {user}\n[assistant] "
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids.count(tok.bos_token_id) == 1  # the template's bos only
        # "... [assistant] Yes" tokenizes the trailing space into "▁Yes": the prompt the model
        # continues is the text without that space, its next token "▁Yes" / "▁No"
        yes_ids = tok(text + "Yes", add_special_tokens=False).input_ids
        assert ids[-1] == tok.convert_tokens_to_ids("▁") and yes_ids[:-1] == ids[:-1]
        ids = ids[:-1]
        yes, no = tok.convert_tokens_to_ids(["▁Yes", "▁No"])
        assert s.token_ids == [yes, no] and s.drop_tail == [tok.convert_tokens_to_ids("▁")]
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([ids])).logits[0, -1]
        want.append((lg[yes] - lg[no]).item())
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_tiny_encoder_builders_load(tiny_bert_dir, tiny_electra_dir):
    for path, kind in ((tiny_bert_dir, "bert"), (tiny_electra_dir, "electra")):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
        tok = transformers.AutoTokenizer.from_pretrained(path)
        assert model.config.model_type == kind and model.config.num_labels == 1
        assert model.config.hidden_size == 32
        enc = tok(["what do cats eat", "capital"], ["cats eat food", "Paris"], padding=True,
                  return_tensors="pt")
        with torch.no_grad():
            out = model(**enc).logits
        assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_yes_no_with_a_byte_level_tokenizer(tiny_llama_dir, tmp_path):
    from tiny_models import make_bytelevel_tokenizer

    tok_dir = make_bytelevel_tokenizer(tmp_path / "bytelevel")
    s = load("yes-no", tiny_llama_dir, tokenizer=str(tok_dir), batch_size=3)
    tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert tok.convert_ids_to_tokens(s.token_ids) == ["ĠYes", "ĠNo"] and s.drop_tail == []
    got = s.score_pairs(QUERIES, PASSAGES)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    want = []
    for q, d in zip(QUERIES, PASSAGES, strict=True):
        ids = tok(f"Passage: {d}\nQuery: {q}\nDoes the passage answer the query? "
                  "Answer 'Yes' or 'No'.\nAnswer:").input_ids
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([ids])).logits[0, -1, s.token_ids]
        want.append((lg[0] - lg[1]).item())
    np.testing.assert_allclose(got, want, atol=1e-5)
