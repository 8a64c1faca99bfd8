"""PE-Rank as the reference does it (issue 16.7): the reference prompt, BOS before the output,
raw hidden-state scoring, the ``pe-rank`` preset, and a loader for the published checkpoint
layout, tested on a tiny checkpoint built in that layout.

Reference: liuqi6777/pe_rank, ``src/ranker.py`` (``ListwiseEmbeddingRanker._get_message``,
``_add_prefix_prompt``, ``_add_post_prompt``, ``_get_input_for_one_passage``; the
``prefix_allowed_tokens_fn`` that forces BOS before the first passage token),
``src/modeling/encoder.py`` (mean pooling, L2 normalisation, ``mlp2x_gelu`` projector),
``src/modeling/causal_lm/modeling_mistral.py`` (projected embeddings as LM-head rows, i.e. raw
``<h, P_j>`` logits) and ``src/modeling/builder.py`` (the checkpoint layout).
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import CHAT_TEMPLATE, make_tiny_bert, make_tiny_llama  # noqa: E402

from rankstack.errors import ConfigError, InputError  # noqa: E402
from rankstack.llm.pe_rank import PERankModel, PERankReranker  # noqa: E402
from rankstack.llm.pe_rank.model import SLOT, reference_user_message  # noqa: E402
from rankstack.llm.pe_rank.published import is_published_layout, load_published  # noqa: E402
from rankstack.records import Doc, Ranking, Run  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GOLDEN = (
    "I will provide you with 2 passages, each with a special token representing the passage "
    "enclosed in [], followed by original text.\n"
    "Rank the passages based on their relevance to the search query: what do cats eat.\n"
    "Passage 1: [<PLACEHOLDER>]\n\n"
    "Passage 2: [<PLACEHOLDER>]\n\n"
    "Search Query: what do cats eat.\n"
    "Rank the 2 relatively ordered passages above based on their relevance to the search "
    "query, output the ranking in descending order. Only output the 2 unique special token in "
    "the ranking.\n\n"
)


def test_reference_user_message_is_the_reference_prompt():
    assert reference_user_message("what do cats eat", 2) == GOLDEN
    with_text = reference_user_message("q", 1, ["  cats [1] eat fish [23]\n"])
    # ListwiseTextEmbeddingRanker: "Passage {i}: [<PLACEHOLDER>] {content}", content stripped
    # and "[k]" written "(k)" (_replace_number)
    assert "Passage 1: [<PLACEHOLDER>] cats (1) eat fish (23)\n\n" in with_text


@pytest.fixture(scope="module")
def chat_llama(tmp_path_factory):
    from transformers import AutoTokenizer

    path = make_tiny_llama(tmp_path_factory.mktemp("pub-llama"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("pub-bert"))


def test_reference_layout_token_ids(chat_llama):
    from transformers import AutoTokenizer

    m = PERankModel.from_pretrained(str(chat_llama), d_emb=32, layout="reference",
                                    bos_before_output=True, normalize_hidden=False)
    tok = AutoTokenizer.from_pretrained(chat_llama)
    prompt = m.build_prompt("what do cats eat", 2)
    full = tok.apply_chat_template([{"role": "user", "content": GOLDEN}], tokenize=False,
                                   add_generation_prompt=True)
    head, rest = full.split("I will provide", 1)
    rest = "I will provide" + rest
    pieces = rest.split("<PLACEHOLDER>")

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    expected = ids(head) + ids(pieces[0]) + [SLOT] + ids(pieces[1]) + [SLOT] + ids(pieces[2])
    expected += [tok.bos_token_id]  # forced BOS before the first output passage
    assert prompt.ids == expected
    assert prompt.ids.count(SLOT) == 2 and prompt.slot_docs == [0, 1]


def test_raw_hidden_state_scoring_when_not_normalised(chat_llama):
    m = PERankModel.from_pretrained(str(chat_llama), d_emb=32, normalize_hidden=False)
    h = torch.randn(3, m.config.d_llm) * 7
    p = torch.randn(4, m.config.d_llm)
    torch.testing.assert_close(m.passage_logits(h, p), h @ p.T)
    m.config.normalize_hidden = True
    torch.testing.assert_close(m.passage_logits(h, p),
                               torch.nn.functional.normalize(h, dim=-1) @ p.T)


def make_published(tmp_path, llama, bert):
    """A tiny checkpoint in the published layout: embed_llama config, LLM + projector +
    encoder weights in one model.safetensors, tokenizer with <PLACEHOLDER>/<RANK> added."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "pe-rank-tiny"
    tok = AutoTokenizer.from_pretrained(llama)
    tok.add_tokens(["<PLACEHOLDER>", "<RANK>"], special_tokens=True)
    lm = AutoModelForCausalLM.from_pretrained(llama)
    lm.resize_token_embeddings(len(tok))
    g = torch.Generator().manual_seed(5)
    d_llm, d_emb = lm.config.hidden_size, 32
    proj = {"model.projector.0.weight": torch.randn(d_llm, d_emb, generator=g),
            "model.projector.0.bias": torch.randn(d_llm, generator=g),
            "model.projector.2.weight": torch.randn(d_llm, d_llm, generator=g),
            "model.projector.2.bias": torch.randn(d_llm, generator=g)}
    enc = {"model.encoder.encoder.embeddings.word_embeddings.weight": torch.randn(10, d_emb)}
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    out.mkdir()
    save_file({**state, **proj, **enc}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    cfg = lm.config.to_dict()
    cfg.update(model_type="embed_llama", architectures=["EmbedLlamaForCausalLM"],
               encoder_name=str(bert), encoder_pooling="mean", projector_type="mlp2x_gelu",
               embedding_size=d_emb, use_proj=True)
    (out / "config.json").write_text(json.dumps(cfg))
    tok.save_pretrained(out)
    return out, proj, lm


def test_published_layout_loads_with_the_reference_settings(chat_llama, bert, tmp_path):
    ckpt, proj, lm = make_published(tmp_path, chat_llama, bert)
    assert is_published_layout(ckpt) and not is_published_layout(chat_llama)
    model, encoder = load_published(ckpt)
    assert encoder == str(bert)
    c = model.config
    assert (c.layout, c.normalize_hidden, c.bos_before_output, c.max_passage_tokens) == (
        "reference", False, True, 512)
    torch.testing.assert_close(model.projector.net[0].weight, proj["model.projector.0.weight"])
    torch.testing.assert_close(model.projector.net[2].bias, proj["model.projector.2.bias"])
    for k, v in lm.state_dict().items():
        torch.testing.assert_close(model.lm.state_dict()[k], v, msg=k)

    # through the re-ranker (and the registry): the encoder comes from the config
    rr = PERankReranker(str(ckpt), window=3, stride=2)
    assert rr.embedder.name == str(bert) and rr.embedder.max_length == 512
    docs = {f"d{i}": Doc(f"d{i}", t) for i, t in enumerate(
        ["cats eat fish", "Paris is in France", "dogs sleep", "code in python"])}
    run = Run({"q": Ranking.from_order("q", list(docs), "bm25")})
    out = rr.rerank(run, {"q": "what do cats eat"}, docs)
    assert sorted(out["q"].doc_ids) == sorted(docs)
    with pytest.raises(ConfigError, match="normalize_hidden"):
        PERankReranker(str(ckpt), normalize_hidden=True)
    # the preset through the one registry, the model pointed at the local checkpoint
    from rankstack.rerank import load_reranker

    pr = load_reranker({"preset": "pe-rank", "model": str(ckpt),
                        "settings": {"window": 3, "stride": 2}})
    assert isinstance(pr, PERankReranker) and pr.model.config.layout == "reference"
    assert pr.rerank(run, {"q": "what do cats eat"}, docs)["q"].doc_ids == out["q"].doc_ids


def test_published_layout_errors(chat_llama, bert, tmp_path):
    ckpt, _, _ = make_published(tmp_path, chat_llama, bert)
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "projector_type": "linear"}))
    with pytest.raises(ConfigError, match="projector_type"):
        load_published(ckpt)
    (ckpt / "config.json").write_text(json.dumps({**cfg, "encoder_pooling": "cls"}))
    with pytest.raises(ConfigError, match="encoder_pooling"):
        load_published(ckpt)
    del cfg["encoder_name"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="encoder_name"):
        load_published(ckpt)
    with pytest.raises(InputError, match="not a published"):
        load_published(chat_llama)


def test_pe_rank_preset_is_the_reference():
    from rankstack.rerank.presets import PRESETS

    p = PRESETS["pe-rank"]
    assert p["family"] == "pe-rank" and p["model"] == "liuqi6777/pe-rank-mistral-jina"
    s = p["settings"]
    assert (s["layout"], s["normalize_hidden"], s["bos_before_output"]) == (
        "reference", False, True)
    assert (s["window"], s["stride"], s["max_passage_tokens"]) == (20, 10, 512)


def test_passage_logits_stay_float32_under_bf16_autocast(chat_llama):
    # a window's passage logits differ by little (a barely trained projector maps passages to
    # nearly one vector); bf16 autocast would round those differences away
    m = PERankModel.from_pretrained(str(chat_llama), d_emb=32)
    h = torch.randn(2, m.config.d_llm)
    base = torch.randn(m.config.d_llm)
    p = base + 1e-3 * torch.randn(5, m.config.d_llm)
    ref = m.passage_logits(h, p)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.passage_logits(h, p)
        proj = m.project(torch.randn(3, 32))
    assert got.dtype == torch.float32 and proj.dtype == m.dtype
    torch.testing.assert_close(got, ref)
    assert len(set(got[0].tolist())) == 5
