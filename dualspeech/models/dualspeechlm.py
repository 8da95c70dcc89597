"""DualSpeechLM: a text LLM (any HF causal LM + LoRA) with an extended speech vocabulary, plus
AcousticGPT conditioned through Chain-of-Condition.

Training (``forward(batch)``, see ``dualspeech.data.dataset`` for the batch) returns named
losses: ``text_ce`` (understanding answers), ``semantic_ce`` (target speech tokens of
generation tasks), ``acoustic_ce`` (AcousticGPT), their weighted sum ``loss``, the
teacher-forced top-1 accuracies ``semantic_acc`` (argmax over the ids decoding may produce) and
``acoustic_acc``, and
``has_text``/``has_semantic``/``has_acoustic`` (1 when the batch holds that kind of target, 0
otherwise; a loss absent from a batch is reported as 0, so a logged mean over batches divided
by the mean of its ``has_*`` is the mean over the batches that had it).

Why the speech rows are a separate table: the backbone's embedding and head stay frozen and
are never copied; only ``K + 2`` rows (K speech tokens + begin/end-of-audio) are trained. The
logits are ``[frozen_head(h)[:, :text_vocab], h @ speech_head.T]``. If the backbone ties its
embedding and head, the speech head is the speech embedding too. ``model.train_text_rows``
(the reference code) trains the backbone's own embedding and head as well, in place.

Generation (KV-cached sampling of text / speech tokens, AcousticGPT decoding) lives in
``dualspeech.inference.lm_generation``; loading the four checkpoint layouts and exporting in
``dualspeech.models.io``; which hidden states condition AcousticGPT in ``dualspeech.models.coc``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from dualspeech.config import build
from dualspeech.data.templates import IGNORE, TaskTemplates, TemplateConfig
from dualspeech.data.token_layout import AcousticSpec
from dualspeech.data.vocab import SpeechVocab, SpeechVocabConfig
from dualspeech.models import coc
from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig
from dualspeech.models.speech_init import SpeechInitConfig, init_new_rows, speech_rows

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SEMANTIC_VOCABS = ("full", "speech")


@dataclass
class LoraSection:
    rank: int = 16                    # 0: no LoRA (frozen backbone; only new rows + AcousticGPT)
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] | str = "all-linear"   # module names, e.g. [qkv_proj, o_proj, gate_up_proj]


@dataclass
class LossWeights:
    text: float = 1.0
    semantic: float = 1.0
    acoustic: float = 1.0


@dataclass
class ModelConfig:
    """``model`` config section."""
    llm: str = "random:llama-debug"   # dualspeech.pretrained spec or a local HF dir
    dtype: str = "float32"            # backbone weight dtype (bfloat16 on GPUs)
    speech: SpeechVocabConfig = field(default_factory=SpeechVocabConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    acoustic_gpt: AcousticGPTConfig | None = None   # null: no acoustic stage (baselines)
    condition: str = "coc"            # coc (paper) | prompt | target | concat (fixed; ablations)
    coc_draw: str = "example"         # example | batch (reference code: one draw per batch)
    coc_spans: str = "codes"          # codes: prompt through <boa> / the codes; reference: bos +
                                      # prompt / <boa> codes <eoa> (eos) (models/coc.py)
    acoustic_understanding: bool = False   # understanding examples train AcousticGPT too, on
                                      # [start, no-speech, end] with a zero speaker (reference)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    semantic_vocab: str = "full"      # semantic CE over: full (paper) | speech (the ids decoding
                                      # samples from: speech codes + end-of-audio)
    init_noise: float = 0.01          # new rows = mean of existing rows + noise * their std
    speech_init: SpeechInitConfig = field(default_factory=SpeechInitConfig)  # speech_init.py
    train_norms: bool = True          # also train the backbone's norm weights (reference code)
    train_text_rows: bool = False     # also train the backbone's whole embedding and LM head
                                      # (reference code: modules_to_save); false: frozen
    seed: int = 0                     # init of the new rows / AcousticGPT

    def __post_init__(self):
        if self.condition not in coc.CONDITIONS:
            raise ValueError(f"model.condition={self.condition!r}; use one of {coc.CONDITIONS}")
        if self.coc_draw not in ("example", "batch"):
            raise ValueError(f"model.coc_draw={self.coc_draw!r}; use example or batch")
        if self.coc_spans not in coc.SPANS:
            raise ValueError(f"model.coc_spans={self.coc_spans!r}; use one of {coc.SPANS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}; use one of {sorted(DTYPES)}")
        if self.semantic_vocab not in SEMANTIC_VOCABS:
            raise ValueError(f"model.semantic_vocab={self.semantic_vocab!r}; use one of "
                             f"{SEMANTIC_VOCABS}")


class DualSpeechLM(nn.Module):
    def __init__(self, cfg: ModelConfig, template_cfg: TemplateConfig | None = None,
                 vocab: SpeechVocab | None = None, full_config: dict | None = None,
                 init_speech_rows: bool = True):
        """Build from config. ``vocab``: an already extended tokenizer (when loading); ``None``
        extends the backbone's own tokenizer. ``init_speech_rows=False`` (loading trained
        weights over them) skips ``model.speech_init`` and leaves mean-init placeholders."""
        super().__init__()
        from dualspeech.pretrained import load_causal_lm

        self.cfg = cfg
        self.full_config = full_config or {}
        llm, tokenizer = load_causal_lm(cfg.llm, dtype=DTYPES[cfg.dtype])
        self.templates = model_input(cfg, template_cfg or TemplateConfig(), vocab or tokenizer)
        self.vocab = self.templates.vocab
        in_emb, head = llm.get_input_embeddings(), llm.get_output_embeddings()
        rows, text_vocab = in_emb.weight.shape[0], self.vocab.text_vocab_size
        if rows < text_vocab:
            raise ValueError(f"{cfg.llm}: embedding has {rows} rows but its tokenizer has "
                             f"{text_vocab} tokens")
        self.tied = head is None or head.weight is in_emb.weight
        gen = torch.Generator().manual_seed(cfg.seed)
        n_new = self.vocab.num_new
        merged = rows >= self.vocab.size   # a merged model already carries the speech rows
        with torch.no_grad():
            init = cfg.speech_init if init_speech_rows else SpeechInitConfig()
            emb_rows = (in_emb.weight[text_vocab:self.vocab.size].float().clone() if merged else
                        speech_rows(init, in_emb.weight[:text_vocab], self.vocab.cfg.num_tokens,
                                    cfg.init_noise, gen))
            self.speech_embed = nn.Parameter(emb_rows)
            if not self.tied:
                head_rows = (head.weight[text_vocab:self.vocab.size].float().clone() if merged
                             else init_new_rows(head.weight[:text_vocab], n_new, cfg.init_noise, gen))
                self.speech_head = nn.Parameter(head_rows)
        for p in llm.parameters():
            p.requires_grad_(False)
        if cfg.lora.rank > 0:
            from peft import LoraConfig, get_peft_model

            llm = get_peft_model(llm, LoraConfig(
                r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.targets, bias="none"))
        if cfg.train_norms:
            for name, p in llm.named_parameters():
                if "norm" in name.rsplit(".", 2)[-2].lower():
                    p.requires_grad_(True)
        if cfg.train_text_rows:
            for p in (in_emb.weight, *([] if head is None else [head.weight])):
                p.requires_grad_(True)
        self.llm = llm
        self.hidden_size = in_emb.weight.shape[1]
        self.acoustic_gpt = None
        if cfg.acoustic_gpt is not None:
            agpt_cfg = AcousticGPTConfig(**{**asdict(cfg.acoustic_gpt), "cond_dim": self.hidden_size})
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                self.acoustic_gpt = AcousticGPT(agpt_cfg)

    # -- backbone pieces ------------------------------------------------------------------------
    @property
    def backbone(self):
        """The plain HF causal LM (LoRA layers injected in place when LoRA is on)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def _speech_head(self) -> torch.Tensor:
        return self.speech_embed if self.tied else self.speech_head

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        base = self.backbone.get_input_embeddings()
        text_vocab = self.vocab.text_vocab_size
        is_new = ids >= text_vocab
        x = base(ids.masked_fill(is_new, 0))
        new = F.embedding((ids - text_vocab).clamp(min=0), self.speech_embed).to(x.dtype)
        return torch.where(is_new.unsqueeze(-1), new, x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        head = self.backbone.get_output_embeddings()
        text = head(h)[..., :self.vocab.text_vocab_size]
        speech = F.linear(h, self._speech_head().to(h.dtype))
        return torch.cat([text, speech], -1)

    def hidden(self, input_ids, attention_mask, past=None, position_ids=None):
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        out = self.backbone.get_decoder()(
            inputs_embeds=self.embed(input_ids), attention_mask=attention_mask,
            position_ids=position_ids, past_key_values=past, use_cache=past is not None)
        return out.last_hidden_state, out.past_key_values

    def acoustic_spec(self) -> AcousticSpec | None:
        """What the dataset needs to know about the AcousticGPT (None: the model has none)."""
        return None if self.acoustic_gpt is None else self.acoustic_gpt.cfg.spec()

    def gradient_checkpointing_enable(self):
        self.backbone.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    # -- training -----------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        h, _ = self.hidden(batch["input_ids"], batch["attention_mask"])
        target = batch["labels"][:, 1:]
        sel = target != IGNORE
        h_sel, y = h[:, :-1][sel], target[sel]
        is_gen = batch["is_generation"][:, None].expand_as(target)[sel]
        # speech-token steps over the ids decoding may produce (codes + end-of-audio): their
        # accuracy always, their CE with semantic_vocab=speech (no text head there: cheaper)
        text_vocab = self.vocab.text_vocab_size
        allowed = self.vocab.speech_output_mask(h.device)[text_vocab:]
        gen_y = y[is_gen] - text_vocab
        if self.cfg.semantic_vocab == "speech":
            text_ce_all = F.cross_entropy(self.logits(h_sel[~is_gen]).float(), y[~is_gen],
                                          reduction="none")
            gen_logits = F.linear(h_sel[is_gen], self._speech_head().to(h.dtype)).float()
            gen_logits = gen_logits.masked_fill(~allowed, float("-inf"))
            sem_ce_all = F.cross_entropy(gen_logits, gen_y, reduction="none")
        else:
            logits = self.logits(h_sel).float()
            ce = F.cross_entropy(logits, y, reduction="none")
            text_ce_all, sem_ce_all = ce[~is_gen], ce[is_gen]
            gen_logits = logits[is_gen, text_vocab:].detach().masked_fill(~allowed, float("-inf"))
        zero = h.sum() * 0.0   # keeps every loss in the graph (DDP) when a kind is absent
        text_ce = text_ce_all.mean() if text_ce_all.numel() else zero
        sem_ce = sem_ce_all.mean() if sem_ce_all.numel() else zero
        hits = (gen_logits.argmax(-1) == gen_y).float()
        out = {"text_ce": text_ce, "semantic_ce": sem_ce,
               "semantic_acc": hits.mean().detach() if hits.numel() else zero.detach(),
               "has_text": (~is_gen).any().float(), "has_semantic": is_gen.any().float()}
        w = self.cfg.loss_weights
        loss = w.text * text_ce + w.semantic * sem_ce
        if self.acoustic_gpt is not None:
            ac_ce, has, ac_acc = self._acoustic_loss(h, batch)
            out.update(acoustic_ce=ac_ce, acoustic_acc=ac_acc, has_acoustic=has)
            loss = loss + w.acoustic * ac_ce
        out["loss"] = loss
        return out

    def _acoustic_loss(self, h, batch):
        rows = self._acoustic_rows(batch, h.device)
        if rows is None:
            zero = sum(p.sum() for p in self.acoustic_gpt.parameters()) * 0.0 + h.sum() * 0.0
            return zero, zero.detach(), zero.detach()
        idx, mask, tokens, tokens_mask, spk = rows
        cond, cond_mask = coc.gather_rows(h[idx], mask)
        loss, logits = self.acoustic_gpt(cond, cond_mask, spk, tokens, tokens_mask,
                                         cond_pos=coc.gather_positions(mask))
        with torch.no_grad():   # teacher-forced top-1 accuracy of the next codec id (and end)
            valid = tokens_mask[:, 1:].bool()
            acc = (logits[:, :-1].argmax(-1) == tokens[:, 1:])[valid].float().mean()
        return loss, loss.new_ones(()), acc

    def _acoustic_rows(self, batch, device):
        """Rows that train AcousticGPT: (batch index, condition mask, [start, codes, end] targets
        + mask, speaker embeddings), or None. Generation examples use their codec ids, speaker
        prompt and Chain-of-Condition mask; with ``model.acoustic_understanding`` (reference
        code) understanding examples add the target [start, no-speech, end], a zero speaker
        vector and their whole sequence as condition."""
        parts = []
        gen = batch["acoustic_index"]
        if gen.numel():
            prompt, target = coc.condition_spans(self.cfg.coc_spans, batch["prompt_mask"][gen],
                                                 batch["target_mask"][gen],
                                                 batch["attention_mask"][gen])
            mask = coc.training_mask(self.cfg.condition, prompt, target, self.training,
                                     [batch["tasks"][i] for i in gen.tolist()],
                                     per_batch=self.cfg.coc_draw == "batch")
            parts.append((gen, mask, batch["acoustic_tokens"], batch["acoustic_mask"].bool(),
                          batch["speaker_embedding"]))
        und = (~batch["is_generation"].bool()).nonzero()[:, 0]
        if self.cfg.acoustic_understanding and und.numel():
            lay = self.acoustic_gpt.layout
            tokens = torch.tensor([lay.start_id, lay.no_speech_id, lay.end_id]).expand(len(und), 3)
            parts.append((und, batch["attention_mask"][und].bool(), tokens,
                          torch.ones(len(und), 3, dtype=torch.bool),
                          torch.zeros(len(und), self.acoustic_gpt.cfg.spk_dim)))
        if not parts:
            return None
        width = max(p[2].shape[1] for p in parts)
        pad = self.acoustic_gpt.pad_id

        def cat(i, fill):
            return torch.cat([F.pad(p[i], (0, width - p[i].shape[1]), value=fill) if fill is not None
                              else p[i] for p in parts]).to(device)
        return (cat(0, None), cat(1, None), cat(2, pad), cat(3, False),
                torch.cat([p[4].to(device, torch.float32) for p in parts]))

    @classmethod
    def from_config(cls, cfg: dict, vocab: SpeechVocab | None = None,
                    init_speech_rows: bool = True) -> "DualSpeechLM":
        return cls(build(ModelConfig, cfg.get("model"), "model"),
                   build(TemplateConfig, cfg.get("templates"), "templates"), vocab, cfg,
                   init_speech_rows)


def model_input(cfg: ModelConfig, template_cfg: TemplateConfig, vocab_or_tokenizer) -> TaskTemplates:
    """The weight-free half of a model: its extended vocabulary (made from the backbone's
    tokenizer, or a saved ``SpeechVocab``) and the task templates over it. The one home of that
    construction, shared by ``DualSpeechLM`` and stage 5 (which writes the shards without the
    LLM's weights)."""
    vocab = (vocab_or_tokenizer if isinstance(vocab_or_tokenizer, SpeechVocab)
             else SpeechVocab.extend(vocab_or_tokenizer, cfg.speech))
    if vocab.cfg.num_tokens != cfg.speech.num_tokens:
        raise ValueError(f"saved vocabulary has {vocab.cfg.num_tokens} speech tokens, "
                         f"model.speech.num_tokens is {cfg.speech.num_tokens}")
    if template_cfg.format == "reference" and cfg.semantic_vocab == "speech":
        raise ValueError("templates.format: reference labels <boa> and eos in speech answers, "
                         "which model.semantic_vocab: speech cannot score; use full")
    return TaskTemplates(template_cfg, vocab)


def build_templates(cfg: dict) -> tuple[TaskTemplates, str]:
    """The templates a model of the full config ``cfg`` renders its input with, and its codec-id
    field, loading the backbone's tokenizer only: what stage 5 writes the shards with."""
    from transformers import AutoTokenizer

    from dualspeech.pretrained import resolve

    model_cfg = build(ModelConfig, cfg.get("model"), "model")
    tok = AutoTokenizer.from_pretrained(resolve(model_cfg.llm), local_files_only=True)
    acoustic_field = model_cfg.acoustic_gpt.field if model_cfg.acoustic_gpt else "acoustic_tokens"
    templates = model_input(model_cfg, build(TemplateConfig, cfg.get("templates"), "templates"), tok)
    return templates, acoustic_field
