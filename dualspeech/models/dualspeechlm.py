"""DualSpeechLM: a text LLM (any HF causal LM + LoRA) with an extended speech vocabulary, plus
AcousticGPT conditioned through Chain-of-Condition.

Training (``forward(batch)``, see ``dualspeech.data.dataset`` for the batch) returns named
losses: ``text_ce`` (understanding answers), ``semantic_ce`` (target speech tokens of
generation tasks), ``acoustic_ce`` (AcousticGPT), their weighted sum ``loss``, and
``has_text``/``has_semantic``/``has_acoustic`` (1 when the batch holds that kind of target, 0
otherwise; a loss absent from a batch is reported as 0, so a logged mean over batches divided
by the mean of its ``has_*`` is the mean over the batches that had it).

Why the speech rows are a separate table: the backbone's embedding and head stay frozen and
are never copied; only ``K + 2`` rows (K speech tokens + begin/end-of-audio) are trained. The
logits are ``[frozen_head(h)[:, :text_vocab], h @ speech_head.T]``. If the backbone ties its
embedding and head, the speech head is the speech embedding too.

Inference API (stable; used by ``dualspeech.inference``)::

    model = DualSpeechLM.from_checkpoint(path, device="cpu")
        # path: an exp dir (its exported model/ or newest checkpoint), a checkpoints/step-N
        # dir, an exported model dir or a merged dir (python -m dualspeech.bin.merge)
    model.vocab, model.templates, model.cfg       # SpeechVocab, TaskTemplates, full config
    texts = model.generate_text(batch, max_new_tokens=128, temperature=0.6, top_p=0.9,
                                top_k=0, do_sample=True, generator=None)  # list[str]
    out = model.generate_speech_tokens(batch, max_new_tokens=400, temperature=0.6, top_p=0.9)
        # SpeechTokens(tokens=[codes (N_i,)], prompt_hidden=[(Lp_i, H)], token_hidden=[(N_i, H)])
    codes = model.generate_acoustic(out, speaker_embedding (B, spk_dim), max_len=1000,
                                    top_k=10, temperature=1.0)   # list of codec id tensors

``batch`` is ``TaskDataset.collate_prompts(examples)`` output: left-padded ``input_ids`` and
``attention_mask`` of the prompts (generation prompts end with ``<boa>``).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dualspeech.config import build, load_yaml
from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig
from dualspeech.models.templates import IGNORE, TaskTemplates, TemplateConfig
from dualspeech.models.vocab import SpeechVocab, SpeechVocabConfig, init_new_rows

log = logging.getLogger(__name__)
CONDITIONS = ("coc", "prompt", "target", "concat")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    loss_weights: LossWeights = field(default_factory=LossWeights)
    init_noise: float = 0.01          # new rows = mean of existing rows + noise * their std
    train_norms: bool = True          # also train the backbone's norm weights (reference code)
    seed: int = 0                     # init of the new rows / AcousticGPT

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(f"model.condition={self.condition!r}; use one of {CONDITIONS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}; use one of {sorted(DTYPES)}")


@dataclass
class SpeechTokens:
    tokens: list[torch.Tensor]         # speech codes 0..K-1 per example
    prompt_hidden: list[torch.Tensor]  # (Lp, H) final-layer hidden states of the prompt
    token_hidden: list[torch.Tensor]   # (N, H) hidden states at the generated speech tokens


def gather_rows(h: torch.Tensor, mask: torch.Tensor):
    """Rows of ``h`` (B, T, H) where ``mask`` (B, T) is set, packed left: (B, L, H), (B, L)."""
    lengths = mask.sum(1)
    width = max(int(lengths.max()), 1) if len(lengths) else 1
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    rows = h.gather(1, order.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
    valid = torch.arange(width, device=h.device)[None, :] < lengths[:, None]
    return rows * valid.unsqueeze(-1).to(rows.dtype), valid


def pad_rows(rows: list[torch.Tensor]):
    """List of (L_i, H) -> (B, L, H) zero padded + validity mask."""
    width = max(max(len(r) for r in rows), 1)
    out = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
    valid = torch.zeros(len(rows), width, dtype=torch.bool, device=out.device)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
        valid[i, :len(r)] = True
    return out, valid


class DualSpeechLM(nn.Module):
    def __init__(self, cfg: ModelConfig, template_cfg: TemplateConfig | None = None,
                 vocab: SpeechVocab | None = None, full_config: dict | None = None):
        """Build from config. ``vocab``: an already extended tokenizer (when loading); ``None``
        extends the backbone's own tokenizer."""
        super().__init__()
        from dualspeech.pretrained import load_causal_lm

        self.cfg = cfg
        self.full_config = full_config or {}
        llm, tokenizer = load_causal_lm(cfg.llm, dtype=DTYPES[cfg.dtype])
        self.vocab = vocab or SpeechVocab.extend(tokenizer, cfg.speech)
        if self.vocab.cfg.num_tokens != cfg.speech.num_tokens:
            raise ValueError(f"saved vocabulary has {self.vocab.cfg.num_tokens} speech tokens, "
                             f"model.speech.num_tokens is {cfg.speech.num_tokens}")
        self.templates = TaskTemplates(template_cfg or TemplateConfig(), self.vocab)
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
            emb_rows = (in_emb.weight[text_vocab:self.vocab.size].float().clone() if merged else
                        init_new_rows(in_emb.weight[:text_vocab], n_new, cfg.init_noise, gen))
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
        logits = self.logits(h[:, :-1][sel]).float()
        ce = F.cross_entropy(logits, target[sel], reduction="none")
        is_gen = batch["is_generation"][:, None].expand_as(target)[sel]
        zero = h.sum() * 0.0   # keeps every loss in the graph (DDP) when a kind is absent
        text_ce = ce[~is_gen].mean() if bool((~is_gen).any()) else zero
        sem_ce = ce[is_gen].mean() if bool(is_gen.any()) else zero
        out = {"text_ce": text_ce, "semantic_ce": sem_ce,
               "has_text": (~is_gen).any().float(), "has_semantic": is_gen.any().float()}
        w = self.cfg.loss_weights
        loss = w.text * text_ce + w.semantic * sem_ce
        if self.acoustic_gpt is not None:
            ac_ce, has = self._acoustic_loss(h, batch)
            out.update(acoustic_ce=ac_ce, has_acoustic=has)
            loss = loss + w.acoustic * ac_ce
        out["loss"] = loss
        return out

    def _condition_mask(self, batch, idx):
        """Chain-of-Condition: which hidden states condition AcousticGPT, per example."""
        prompt, target = batch["prompt_mask"][idx], batch["target_mask"][idx]
        mode = self.cfg.condition
        if mode == "coc":
            if not self.training:
                return prompt | target
            choice = torch.randint(0, 3, (len(idx), 1), device=prompt.device)
            return torch.where(choice == 0, prompt, torch.where(choice == 1, target,
                                                                prompt | target))
        return {"prompt": prompt, "target": target, "concat": prompt | target}[mode]

    def _acoustic_loss(self, h, batch):
        idx = batch["acoustic_index"]
        if idx.numel() == 0:
            zero = sum(p.sum() for p in self.acoustic_gpt.parameters()) * 0.0 + h.sum() * 0.0
            return zero, zero.detach()
        cond, cond_mask = gather_rows(h[idx], self._condition_mask(batch, idx))
        loss, _ = self.acoustic_gpt(cond, cond_mask, batch["speaker_embedding"],
                                    batch["acoustic_tokens"], batch["acoustic_mask"])
        return loss, loss.new_ones(())

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def _decode(self, batch, allowed: torch.Tensor, stop_id: int, max_new_tokens: int,
                temperature: float, top_p: float, top_k: int, do_sample: bool, generator,
                keep_hidden: bool):
        """Batched incremental sampling with the backbone's KV cache; left-padded prompts."""
        from transformers import DynamicCache

        ids, mask = batch["input_ids"], batch["attention_mask"]
        B = ids.shape[0]
        past = DynamicCache(config=self.backbone.config)
        h, past = self.hidden(ids, mask, past)
        prompt_h, pos = h, mask.long().sum(1) - 1
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        tokens, hiddens = [], []
        for _ in range(max_new_tokens):
            logits = self.logits(h[:, -1]).float().masked_fill(~allowed, float("-inf"))
            nxt = sample(logits, temperature, top_p, top_k, do_sample, generator)
            nxt = nxt.masked_fill(done, stop_id)
            tokens.append(nxt)
            done |= nxt == stop_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            pos = pos + 1
            h, past = self.hidden(nxt[:, None], mask, past, pos[:, None])
            if keep_hidden:
                hiddens.append(h[:, -1])
        seq = torch.stack(tokens, 1)
        lengths = [int((row == stop_id).nonzero()[0]) if bool((row == stop_id).any())
                   else len(row) for row in seq]
        prompts = [prompt_h[i][batch["attention_mask"][i].bool()] for i in range(B)]
        hid = torch.stack(hiddens, 1) if hiddens else h.new_zeros(B, 0, h.shape[-1])
        return ([seq[i, :n] for i, n in enumerate(lengths)], prompts,
                [hid[i, :n] for i, n in enumerate(lengths)])

    def _allowed(self, speech: bool, device) -> torch.Tensor:
        allowed = torch.zeros(self.vocab.size, dtype=torch.bool, device=device)
        if speech:
            allowed[self.vocab.first_id:self.vocab.first_id + self.vocab.cfg.num_tokens] = True
            allowed[self.vocab.end_audio_id] = True
        else:
            allowed[:self.vocab.text_vocab_size] = True
        return allowed

    def generate_text(self, batch, max_new_tokens: int = 128, temperature: float = 0.6,
                      top_p: float = 0.9, top_k: int = 0, do_sample: bool = True,
                      generator: torch.Generator | None = None) -> list[str]:
        """Answers of understanding prompts (speech tokens are never produced)."""
        eos = self.templates.eos_id
        seqs, _, _ = self._decode(batch, self._allowed(False, batch["input_ids"].device), eos,
                                  max_new_tokens, temperature, top_p, top_k, do_sample,
                                  generator, keep_hidden=False)
        return [self.vocab.tokenizer.decode(s.tolist(), skip_special_tokens=True).strip()
                for s in seqs]

    def generate_speech_tokens(self, batch, max_new_tokens: int = 400, temperature: float = 0.6,
                               top_p: float = 0.9, top_k: int = 0, do_sample: bool = True,
                               generator: torch.Generator | None = None) -> SpeechTokens:
        """Speech tokens of generation prompts (stops at end-of-audio) + their hidden states."""
        seqs, prompts, hid = self._decode(
            batch, self._allowed(True, batch["input_ids"].device), self.vocab.end_audio_id,
            max_new_tokens, temperature, top_p, top_k, do_sample, generator, keep_hidden=True)
        return SpeechTokens([self.vocab.codes(s).cpu() for s in seqs], prompts, hid)

    def acoustic_condition(self, out: SpeechTokens):
        """Condition rows at inference: CoC uses the concatenation [prompt; speech tokens]."""
        mode = "concat" if self.cfg.condition == "coc" else self.cfg.condition
        rows = {"prompt": out.prompt_hidden, "target": out.token_hidden,
                "concat": [torch.cat([p, t]) for p, t in zip(out.prompt_hidden, out.token_hidden)]}
        return pad_rows(rows[mode])

    def generate_acoustic(self, out: SpeechTokens, speaker_embedding: torch.Tensor,
                          max_len: int = 1000, top_k: int = 10, temperature: float = 1.0,
                          generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if self.acoustic_gpt is None:
            raise ValueError("this model has no AcousticGPT (model.acoustic_gpt: null): its "
                             "speech tokens go to a unit vocoder / codec decoder directly")
        cond, cond_mask = self.acoustic_condition(out)
        return self.acoustic_gpt.generate(cond, cond_mask, speaker_embedding.to(cond.device),
                                          max_len, top_k, temperature, generator=generator)

    # -- save / load --------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path:
        """Write an inference dir: adapter/ (PEFT), extra.safetensors, tokenizer/, config.yaml."""
        from safetensors.torch import save_file

        from dualspeech.config import save_config
        from dualspeech.utils.io import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.cfg.lora.rank > 0:
            self.llm.save_pretrained(directory / "adapter")
        extra = {n: p.detach().float().contiguous().cpu() for n, p in self.named_parameters()
                 if p.requires_grad and "lora_" not in n}   # LoRA weights go to adapter/
        with atomic_path(directory / "extra.safetensors") as tmp:
            save_file(extra, str(tmp))
        self.vocab.save(directory / "tokenizer")
        save_config(self.full_config, directory)
        return directory

    @classmethod
    def from_config(cls, cfg: dict, vocab: SpeechVocab | None = None) -> "DualSpeechLM":
        return cls(build(ModelConfig, cfg.get("model"), "model"),
                   build(TemplateConfig, cfg.get("templates"), "templates"), vocab, cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "DualSpeechLM":
        """Load any of: exp dir, checkpoints/step-N, exported model dir, merged dir."""
        from safetensors.torch import load_file

        from dualspeech.training.checkpoint import latest_checkpoint, load_trainable_state_dict

        path = Path(path)
        if (path / "model").is_dir() and (path / "model" / "config.yaml").exists():
            path = path / "model"
        elif (path / "checkpoints").is_dir() and not (path / "config.yaml").exists():
            raise FileNotFoundError(f"{path} has checkpoints but no config.yaml")
        if (path / "checkpoints").is_dir() and not (path / "extra.safetensors").exists():
            last = latest_checkpoint(path)
            if last is None:
                raise FileNotFoundError(f"{path}: no complete checkpoint under checkpoints/")
            path = last
        if (path / "model.pt").exists():      # trainer checkpoint: config lives in the exp dir
            exp_dir = path.parent.parent
            cfg = load_yaml(exp_dir / "config.yaml")
            model = cls.from_config(cfg, SpeechVocab.load(exp_dir / "tokenizer"))
            load_trainable_state_dict(model, torch.load(path / "model.pt", map_location="cpu",
                                                        weights_only=True))
            return model.to(device).eval()
        if not (path / "config.yaml").exists():
            raise FileNotFoundError(f"{path}: expected an exp dir, a checkpoints/step-N dir, an "
                                    "exported model dir or a merged dir (with config.yaml)")
        cfg = load_yaml(path / "config.yaml")
        if (path / "llm").is_dir():             # merged: the LLM dir holds everything
            cfg["model"]["llm"] = str(path / "llm")
        model = cls.from_config(cfg, SpeechVocab.load(path / "tokenizer"))
        state = load_file(str(path / "extra.safetensors"))
        if (path / "adapter").is_dir():
            from peft import set_peft_model_state_dict

            adapter = load_file(str(path / "adapter" / "adapter_model.safetensors"))
            result = set_peft_model_state_dict(model.llm, adapter)
            if getattr(result, "unexpected_keys", None):
                raise KeyError(f"adapter tensors do not fit the model: {result.unexpected_keys[:5]}")
        load_trainable_state_dict(model, state)
        return model.to(device).eval()


def sample(logits: torch.Tensor, temperature: float, top_p: float, top_k: int, do_sample: bool,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy, or temperature + top-k + nucleus (top-p) sampling over (B, V) logits."""
    if not do_sample or temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p     # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
