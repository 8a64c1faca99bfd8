"""PE-Rank model: a causal LM that reads and writes passages as single embedding tokens.

After Liu et al., "Leveraging Passage Embeddings for Efficient Listwise Reranking with Large
Language Models" (PE-Rank). Design choices in rankstack (read before changing):

* **Passage slots, no new vocabulary.** Each candidate occupies ONE position of the prompt,
  ``Passage 3: [<slot>]``, whose input embedding is ``projector(encoder(passage))``. The slot is
  not a token of the tokenizer: prompts are assembled from tokenized text pieces and slot
  positions, so the LM's vocabulary and weights are untouched (no ``resize_token_embeddings``).
* **Output = choosing among the projected embeddings.** At each decoding step the output
  vocabulary is the window's passages: ``logits_j = <normalize(h_last), P_j> / temperature``,
  where ``P_j`` is passage j's projected embedding (as in the PE-Rank code, the hidden state is
  L2-normalised). The chosen passage's ``P_j`` is fed back as the next input embedding.
  Decoding is greedy and constrained to passages not yet emitted; EOS is allowed only when all
  are emitted (and is then the only choice), so the output is always a permutation.
* **Layout.** ``compact`` (default) puts the slots back to back, one token per passage;
  ``numbered`` gives each its own line ``Passage 3: [<slot>]`` (~7 tokens per passage);
  ``reference`` is the prompt of the PE-Rank code (``pe_rank/src/ranker.py``,
  ``ListwiseEmbeddingRanker``): "I will provide you with {n} passages, ..." and
  ``Passage {i}: [<slot>]`` blocks, passage text stripped with ``[k]`` written ``(k)``.
  Stored with the model: train and rank with the same layout.
* **Reference switches** (the ``pe-rank`` preset turns them on): ``normalize_hidden=False``
  scores passages with the raw final hidden state (the reference adds the projected
  embeddings as LM-head rows, so ``logit_j = <h, P_j>``); ``bos_before_output=True`` puts the
  BOS token after the generation prompt, as the reference's constrained decoding forces BOS
  before the first passage token. rankstack's defaults (normalised hidden state, no BOS) are
  what the bundled SmolLM2 projector was trained with.
* **Content mode.** With ``with_content`` each slot is followed by the passage text, truncated
  to ``content_tokens`` LLM tokens (default: ``max_passage_tokens``, which is the encoder's
  ``max_length``). Both are stored with the model so training and inference use the same
  passage lengths.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rankstack.errors import ConfigError, InputError, require
from rankstack.io import atomic_write
from rankstack.llm.pe_rank.projector import Projector

torch = require("torch", "neural", "PE-Rank")
transformers = require("transformers", "neural", "PE-Rank")
F = torch.nn.functional

log = logging.getLogger("rankstack.llm.pe_rank")

CONFIG_NAME = "pe_rank_config.json"
PROJECTOR_NAME = "projector.safetensors"
SLOT = -1  # marks a passage slot in a list of token ids
LAYOUTS = ("compact", "numbered", "reference")
#: config keys a loaded projector lets the caller change (the rest were trained with)
RUNTIME_KEYS = {"with_content", "temperature", "content_tokens"}


@dataclass
class PERankConfig:
    """Settings stored with a trained projector (``pe_rank_config.json``)."""

    d_emb: int
    d_llm: int
    #: passage token budget: encoder max_length, and LLM tokens of text in content mode
    max_passage_tokens: int = 128
    #: put passage text after each slot at inference (the efficient mode is False)
    with_content: bool = False
    #: divides the passage logits (normalised hidden state . projected embedding)
    temperature: float = 1.0
    #: the encoder the projector was trained on (informative; dims are checked)
    embedder: str = ""
    #: the LLM the projector was trained with
    llm: str = ""
    #: how slots are laid out: "compact" (slots back to back: 1 token per passage) or
    #: "numbered" (one line per passage, ``Passage 3: [<slot>]``, as in the PE-Rank paper)
    layout: str = "compact"
    #: completed training stages, e.g. ["alignment", "ranking"]
    stages: list[str] | None = None
    #: LLM tokens of passage text in content mode (None: max_passage_tokens)
    content_tokens: int | None = None
    #: L2-normalise the hidden state before scoring passages (the reference does not)
    normalize_hidden: bool = True
    #: append BOS after the generation prompt, before the first output passage (reference)
    bos_before_output: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | os.PathLike[str] = "") -> PERankConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown PE-Rank config key(s) {sorted(unknown)}", path=path or None)
        for key in ("d_emb", "d_llm"):
            if key not in d:
                raise InputError("missing required key", path=path or None, field=key)
        return cls(**d)


@dataclass
class Prompt:
    """Token ids of one prompt; ``SLOT`` entries are passage positions, in ``slot_docs`` order."""

    ids: list[int]
    slot_docs: list[int]

    @property
    def slots(self) -> list[int]:
        return [i for i, t in enumerate(self.ids) if t == SLOT]

    def __len__(self) -> int:
        return len(self.ids)


class PERankModel(torch.nn.Module):
    """A causal LM plus a :class:`Projector`; ranks windows of passage embeddings."""

    def __init__(self, lm: Any, tokenizer: Any, projector: Projector, config: PERankConfig) -> None:
        super().__init__()
        if projector.d_llm != config.d_llm or projector.d_emb != config.d_emb:
            raise ConfigError(f"projector is {projector.d_emb}->{projector.d_llm} but config "
                              f"says {config.d_emb}->{config.d_llm}")
        hidden = int(lm.get_input_embeddings().weight.shape[1])
        if hidden != config.d_llm:
            raise ConfigError(f"LLM {config.llm!r} has hidden size {hidden}, the projector "
                              f"outputs {config.d_llm}")
        if config.max_passage_tokens < 1:
            raise ConfigError(f"max_passage_tokens must be >= 1, not {config.max_passage_tokens}")
        if config.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {LAYOUTS}, not {config.layout!r}")
        if not config.temperature > 0:
            raise ConfigError(f"temperature must be > 0, not {config.temperature}")
        if config.content_tokens is not None and config.content_tokens < 1:
            raise ConfigError(f"content_tokens must be >= 1, not {config.content_tokens}")
        self.lm = lm
        self.tokenizer = tokenizer
        self.projector = projector
        self.config = config
        self._piece_cache: dict[str, list[int]] = {}
        self._template = self._split_chat_template()
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = getattr(lm.config, "eos_token_id", None)
            eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            raise ConfigError(f"the tokenizer of {config.llm!r} has no EOS token")
        self.eos_token_id = int(eos)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, llm: str, projector_path: str | os.PathLike[str] | None = None, *,
                        d_emb: int | None = None, device: str = "cpu", dtype: str | None = None,
                        seed: int = 0, **overrides: Any) -> PERankModel:
        """Load an LLM (hub name or local dir) and a saved projector, or start a fresh one.

        Without ``projector_path`` the projector is randomly initialised (seeded) and ``d_emb``
        is required; ``overrides`` set :class:`PERankConfig` fields. With it, the stored config
        is used and ``overrides`` may only change ``with_content`` and ``temperature``.
        """
        from rankstack.hf_loading import load_model, load_tokenizer, normalize_dtype

        name = normalize_dtype(dtype or "fp32")
        if name == "bf16-mixed":
            raise ConfigError("PE-Rank loads weights in one dtype: use fp32, bf16, fp16 or auto")
        tok = load_tokenizer(llm)
        lm = load_model("AutoModelForCausalLM", llm, dtype=name, device=device)
        d_llm = int(lm.get_input_embeddings().weight.shape[1])
        if projector_path is None:
            if d_emb is None:
                raise ConfigError("a new PE-Rank projector needs d_emb (the encoder's dimension)")
            cfg = PERankConfig(d_emb=int(d_emb), d_llm=d_llm, llm=str(llm), **overrides)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                proj = Projector(cfg.d_emb, cfg.d_llm)
        else:
            cfg, state = load_projector_files(projector_path)
            bad = set(overrides) - RUNTIME_KEYS
            if bad:
                raise ConfigError(f"{sorted(bad)} are fixed by the trained projector at "
                                  f"{projector_path}; only {sorted(RUNTIME_KEYS)} can change")
            for k, v in overrides.items():
                setattr(cfg, k, v)
            if d_emb is not None and d_emb != cfg.d_emb:
                raise ConfigError(f"projector at {projector_path} expects {cfg.d_emb}-dim "
                                  f"embeddings, the encoder gives {d_emb}")
            proj = Projector(cfg.d_emb, cfg.d_llm)
            proj.load_state_dict(state)
        proj.to(device=device, dtype=lm.get_input_embeddings().weight.dtype)
        return cls(lm, tok, proj, cfg)

    def save(self, path: str | os.PathLike[str], *, save_llm: bool = False) -> Path:
        """Write ``pe_rank_config.json`` + ``projector.safetensors`` (and the LLM in ``llm/``)."""
        safetensors_torch = require("safetensors.torch", "neural", "saving a PE-Rank projector",
                                    package="safetensors")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous()
                 for k, v in self.projector.state_dict().items()}
        with atomic_write(out / PROJECTOR_NAME, "wb") as fh:
            fh.write(safetensors_torch.save(state))
        with atomic_write(out / CONFIG_NAME) as fh:
            json.dump(asdict(self.config), fh, indent=2)
            fh.write("\n")
        if save_llm:
            self.lm.save_pretrained(out / "llm")
            self.tokenizer.save_pretrained(out / "llm")
        return out

    @property
    def backbone(self):
        """The decoder stack (``LlamaModel`` etc.) under the LM head, also under a peft wrapper."""
        lm = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return lm.base_model

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    # ------------------------------------------------------------------ prompts
    def _split_chat_template(self) -> tuple[str, str] | None:
        """(text before, text after) the user message in the chat template, or None."""
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        marker = "\x00PE_RANK_USER\x00"
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True)
        if not isinstance(text, str) or text.count(marker) != 1:
            raise ConfigError(f"cannot place the PE-Rank prompt in the chat template of "
                              f"{self.config.llm!r}")
        head, tail = text.split(marker)
        return head, tail

    def _piece(self, text: str) -> list[int]:
        ids = self._piece_cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._piece_cache) < 4096:
                self._piece_cache[text] = ids
        return ids

    def _head(self) -> list[int]:
        if self._template is not None:
            return self._piece(self._template[0])
        bos = self.tokenizer.bos_token_id
        return [] if bos is None else [int(bos)]

    def _tail(self) -> list[int]:
        tail = self._piece(self._template[1] if self._template is not None else "\nRanking:")
        if self.config.bos_before_output:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise ConfigError(f"bos_before_output: the tokenizer of {self.config.llm!r} "
                                  f"has no BOS token")
            tail = [*tail, int(bos)]
        return tail

    @property
    def content_budget(self) -> int:
        """LLM tokens of passage text in content mode."""
        return self.config.content_tokens or self.config.max_passage_tokens

    def _content_ids(self, text: str, budget: int | None = None) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True,
                             max_length=budget or self.content_budget)["input_ids"]
        return list(ids)

    def _reference_prompt(self, query: str, n: int, contents: Sequence[str] | None) -> list[int]:
        """:func:`reference_user_message` inside the chat template, tokenized piece by piece
        around the slots (each ``<PLACEHOLDER>`` becomes one slot position)."""
        texts = None
        if contents is not None:  # truncated in LLM tokens first, as content prompts are
            texts = [self.tokenizer.decode(self._content_ids(reference_passage_text(c)))
                     for c in contents]
        pieces = reference_user_message(query, n, texts).split(PLACEHOLDER)
        ids = list(self._head())  # a copy: pieces are cached lists
        for k, piece in enumerate(pieces):
            if k:
                ids.append(SLOT)
            ids += self._piece(piece)
        return ids + self._tail()

    def build_prompt(self, query: str, n: int, contents: Sequence[str] | None = None) -> Prompt:
        """The listwise prompt for ``n`` passages (slots), with their text if ``contents``."""
        if contents is not None and len(contents) != n:
            raise ValueError(f"{len(contents)} contents for {n} passages")
        if self.config.layout == "reference":
            return Prompt(self._reference_prompt(query, n, contents), list(range(n)))
        what = "one passage token followed by its text" if contents is not None else \
            "one passage token"
        ids = self._head() + self._piece(
            f"Rank the {n} passages below by their relevance to the search query. "
            f"Each passage is shown as {what}.\nQuery: {query}\n")
        numbered = self.config.layout == "numbered"
        if not numbered and contents is None:
            ids += self._piece("Passages:") + [SLOT] * n + self._piece("\n")
        for i in range(n if numbered or contents is not None else 0):
            if numbered:
                ids += self._piece(f"Passage {i + 1}: [") + [SLOT] + self._piece("]")
            else:
                ids.append(SLOT)
            if contents is not None:
                ids += self._piece(" ") + self._content_ids(contents[i])
            ids += self._piece("\n")
        ids += self._piece(f"Query: {query}\nOutput the {n} passage tokens, most relevant first.")
        ids += self._tail()
        return Prompt(ids, list(range(n)))

    def build_text_prompt(self, query: str, contents: Sequence[str]) -> list[int]:
        """The same window as a plain-text listwise (RankGPT-style) prompt, for comparison."""
        n = len(contents)
        ids = self._head() + self._piece(
            f"Rank the {n} passages below by their relevance to the search query. "
            f"Each passage has an identifier [i].\nQuery: {query}\n")
        for i, c in enumerate(contents):
            ids += self._piece(f"[{i + 1}] ") + self._content_ids(c) + self._piece("\n")
        ids += self._piece(f"Query: {query}\nOutput the {n} identifiers, most relevant first, "
                           f"in the format [2] > [1] > ..., and nothing else.")
        return ids + self._tail()

    def text_output_tokens(self, n: int) -> int:
        """Tokens of a complete text-listwise answer ``[1] > [2] > ... [n]`` plus EOS."""
        return len(self._piece(" > ".join(f"[{i + 1}]" for i in range(n)))) + 1

    def prompt_token_counts(self, query: str, contents: Sequence[str]) -> dict[str, int]:
        """Prompt tokens of one window: PE-Rank (without/with content) vs plain text listwise.

        Output tokens: PE-Rank emits ``n`` passage tokens + EOS; text listwise emits
        ``text_output``.
        """
        n = len(contents)
        return {
            "passages": n,
            "pe_rank": len(self.build_prompt(query, n)),
            "pe_rank_with_content": len(self.build_prompt(query, n, contents)),
            "text": len(self.build_text_prompt(query, contents)),
            "pe_rank_output": n + 1,
            "text_output": self.text_output_tokens(n),
        }

    # ------------------------------------------------------------------ forward
    def project(self, emb: torch.Tensor) -> torch.Tensor:
        """Projected passage embeddings ``(n, d_llm)`` in the LLM's dtype and device."""
        if emb.ndim != 2 or emb.shape[1] != self.config.d_emb:
            raise ConfigError(f"passage embeddings must be (n, {self.config.d_emb}), got "
                              f"{tuple(emb.shape)}")
        with torch.autocast(self.device.type, enabled=False):  # in the weights' dtype
            return self.projector(emb.to(device=self.device, dtype=self.dtype))

    def embed_sequence(self, ids: Sequence[int], slot_vecs: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``(L, d_llm)`` with ``slot_vecs[k]`` at the k-th SLOT position."""
        ids_t = torch.tensor(ids, dtype=torch.long, device=self.device)
        is_slot = ids_t == SLOT
        n_slots = int(is_slot.sum())
        if n_slots != slot_vecs.shape[0]:
            raise ValueError(f"{n_slots} slots but {slot_vecs.shape[0]} passage vectors")
        x = self.lm.get_input_embeddings()(ids_t.clamp(min=0))
        if n_slots:
            x = x.index_put((is_slot.nonzero(as_tuple=True)[0],), slot_vecs.to(x.dtype))
        return x

    def hidden_states(self, seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (post-norm) hidden states of right-padded input-embedding sequences."""
        lengths = [s.shape[0] for s in seqs]
        longest = max(lengths)
        d = seqs[0].shape[1]
        x = seqs[0].new_zeros(len(seqs), longest, d)
        mask = torch.zeros(len(seqs), longest, dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            x[i, :s.shape[0]] = s
            mask[i, :s.shape[0]] = 1
        out = self.backbone(inputs_embeds=x, attention_mask=mask, use_cache=False)
        return out.last_hidden_state, mask

    def passage_logits(self, hidden: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """``normalize(hidden) @ proj.T / temperature`` (float32; without ``normalize_hidden``
        the raw hidden state, as the reference)."""
        # float32 also under bf16 autocast (which would run this matmul in bf16): the passage
        # logits of one window differ by small amounts that bf16 rounds away
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.float()
            if self.config.normalize_hidden:
                h = F.normalize(h, dim=-1)
            return h @ proj.float().transpose(-1, -2) / self.config.temperature

    # ------------------------------------------------------------------ ranking
    @torch.inference_mode()
    def rank_projected(self, query: str, proj: torch.Tensor,
                       contents: Sequence[str] | None = None) -> tuple[list[int], dict[str, int]]:
        """Greedy constrained decoding over projected passage embeddings ``proj`` (n, d_llm).

        Returns (permutation of ``range(n)``, counts with prompt_tokens / generated_tokens /
        forward_passes). Each step picks the highest-scoring passage among those not yet
        emitted (ties: lowest index; NaN scores count as -inf); once all are emitted EOS is
        the only allowed token, so it is emitted without scoring.
        """
        n = int(proj.shape[0])
        if n == 0:
            return [], {"prompt_tokens": 0, "generated_tokens": 0, "forward_passes": 0}
        prompt = self.build_prompt(query, n, contents)
        x = self.embed_sequence(prompt.ids, proj[prompt.slot_docs]).unsqueeze(0)
        base = self.backbone
        out = base(inputs_embeds=x, use_cache=True)
        past, h = out.past_key_values, out.last_hidden_state[0, -1]
        remaining = list(range(n))
        order: list[int] = []
        passes = 1
        while remaining:
            if len(remaining) == 1:
                choice = remaining[0]  # forced: no other token is allowed
            else:
                scores = self.passage_logits(h, proj[remaining])
                scores = torch.nan_to_num(scores, nan=float("-inf"))
                choice = remaining[int(torch.argmax(scores))]
            order.append(choice)
            remaining.remove(choice)
            if len(remaining) > 1:  # the next choice is not forced: feed the emitted token
                out = base(inputs_embeds=proj[choice].view(1, 1, -1), past_key_values=past,
                           use_cache=True)
                past, h = out.past_key_values, out.last_hidden_state[0, -1]
                passes += 1
        return order, {"prompt_tokens": len(prompt), "generated_tokens": n + 1,
                       "forward_passes": passes}

    def rank_embeddings(self, query: str, emb: torch.Tensor,
                        contents: Sequence[str] | None = None) -> tuple[list[int], dict[str, int]]:
        """:meth:`rank_projected` from encoder embeddings ``(n, d_emb)``."""
        with torch.inference_mode():
            proj = self.project(emb)
        return self.rank_projected(query, proj, contents)


PLACEHOLDER = "<PLACEHOLDER>"


def reference_user_message(query: str, n: int, contents: Sequence[str] | None = None) -> str:
    """The user message of the PE-Rank reference (``pe_rank/src/ranker.py``:
    ``ListwiseEmbeddingRanker``, or ``ListwiseTextEmbeddingRanker`` with ``contents``), with
    ``<PLACEHOLDER>`` where each passage's embedding goes."""
    msg = (f"I will provide you with {n} passages, each with a special token representing the "
           f"passage enclosed in [], followed by original text.\n"
           f"Rank the passages based on their relevance to the search query: {query}.\n")
    for i in range(n):
        if contents is None:
            msg += f"Passage {i + 1}: [{PLACEHOLDER}]\n\n"
        else:
            msg += f"Passage {i + 1}: [{PLACEHOLDER}] {reference_passage_text(contents[i])}\n\n"
    msg += (f"Search Query: {query}.\nRank the {n} relatively ordered passages above based on "
            f"their relevance to the search query, output the ranking in descending order. "
            f"Only output the {n} unique special token in the ranking.\n\n")
    return msg


def reference_passage_text(text: str) -> str:
    """Passage text as the reference prompt shows it: stripped, ``[k]`` written ``(k)``."""
    return re.sub(r"\[(\d+)\]", r"(\1)", text.strip())


def load_projector_files(path: str | os.PathLike[str]) -> tuple[PERankConfig, dict]:
    """Read ``pe_rank_config.json`` and ``projector.safetensors`` from a directory."""
    safetensors_torch = require("safetensors.torch", "neural", "loading a PE-Rank projector",
                                package="safetensors")
    d = Path(path)
    cfg_path, w_path = d / CONFIG_NAME, d / PROJECTOR_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise InputError("file does not exist (not a saved PE-Rank projector directory)",
                             path=p)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=cfg_path, line=exc.lineno) from None
    if not isinstance(raw, dict):
        raise InputError("expected a JSON object", path=cfg_path)
    cfg = PERankConfig.from_dict(raw, cfg_path)
    state = safetensors_torch.load_file(str(w_path))
    return cfg, state
