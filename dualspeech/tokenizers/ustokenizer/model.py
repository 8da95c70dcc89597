"""The USTokenizer (Whisper frontend -> encoder -> single VQ; decoder for reconstruction) and
its training wrapper with the adapter into a frozen LLM (understanding-driven loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dualspeech.tokenizers.ustokenizer.config import LossConfig, USTokenizerConfig
from dualspeech.tokenizers.ustokenizer.frontend import WhisperFrontend
from dualspeech.tokenizers.ustokenizer.modules import Adapter, build_codec, frame_mask
from dualspeech.tokenizers.ustokenizer.prompts import IGNORE
from dualspeech.tokenizers.ustokenizer.vq import EMAVectorQuantizer

FRAME_SHIFT = 0.04  # seconds per USToken (25 Hz)


class USTokenizer(nn.Module):
    def __init__(self, cfg: USTokenizerConfig, whisper_model: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.frontend = WhisperFrontend(whisper_model.encoder, whisper_model.dims.n_mels,
                                        cfg.pad_to_30s)
        width = self.frontend.width
        channels = cfg.channels or width
        self.encoder, self.decoder = build_codec(cfg.arch, width, channels, cfg.vq.dim,
                                                 cfg.dilations)
        self.vq = EMAVectorQuantizer(cfg.vq.codebook_size, cfg.vq.dim, cfg.vq.decay, cfg.vq.eps,
                                     cfg.vq.kmeans_init_batches, cfg.vq.kmeans_iters,
                                     cfg.vq.dead_code_steps)

    def encode(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Waves -> Whisper features, pre-quantization vectors, quantized vectors and ids."""
        feats, n50 = self.frontend(waves)
        h, n25 = self.encoder(feats, n50)
        valid = frame_mask(n25, h.shape[1]).squeeze(1).bool()
        zq, ids, stats = self.vq(h[valid])
        z = torch.zeros_like(h).masked_scatter(valid[..., None], zq.to(h.dtype))
        token_ids = torch.zeros(valid.shape, dtype=torch.long, device=h.device)
        token_ids[valid] = ids
        return {"feats": feats, "n50": n50, "h": h, "z": z, "n25": n25, "ids": token_ids, **stats}

    @torch.no_grad()
    def tokenize(self, waves: list[torch.Tensor]) -> list[torch.Tensor]:
        """16 kHz waves -> one 1-d LongTensor of USToken ids (25 Hz) per wave."""
        if not bool(self.vq.initialized):
            raise RuntimeError("this USTokenizer's codebook was never initialised (it was saved "
                               "before vq.kmeans_init_batches training batches)")
        out = self.encode(waves)
        return [ids[:n] for ids, n in zip(out["ids"], out["n25"].tolist())]

    def reconstruction_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE over the frames both the features and the reconstruction cover, per utterance as
        if alone (repcodec reconstructs 2T - 1 frames: the shorter length, as in the reference)."""
        rec = self.decoder(out["z"], out["n25"])
        T = min(rec.shape[1], out["feats"].shape[1])
        valid = torch.minimum(out["n50"], self.decoder.frames(out["n25"]))
        mask = frame_mask(valid, T).transpose(1, 2)
        err = (rec[:, :T].float() - out["feats"][:, :T].float()).pow(2) * mask
        return err.sum() / (mask.sum() * out["feats"].shape[-1])


class USTokenizerTraining(nn.Module):
    """Training wrapper: L = alpha * commit + beta * understanding + gamma * reconstruction.

    ``forward(batch)`` follows the trainer contract (dict of losses, ``loss`` = total).
    The Whisper encoder and the LLM are frozen and stay in eval mode.
    """

    def __init__(self, tokenizer: USTokenizer, loss: LossConfig, llm: nn.Module | None = None):
        super().__init__()
        if loss.use_under and llm is None:
            raise ValueError("loss.use_under=true needs an LLM")
        if not (loss.use_commit or loss.use_under or loss.use_recon):
            raise ValueError("all loss terms are switched off (loss.use_commit/use_under/use_recon)")
        self.tokenizer, self.loss_cfg = tokenizer, loss
        self.llm = llm.eval().requires_grad_(False) if loss.use_under else None
        self.adapter = (Adapter(tokenizer.cfg.vq.dim, llm.get_input_embeddings().embedding_dim)
                        if loss.use_under else None)
        self._llm_train_mode = False

    def train(self, mode: bool = True):
        super().train(mode)
        if self.llm is not None:  # frozen; train mode only when HF gradient checkpointing needs it
            self.llm.train(mode and self._llm_train_mode)
        return self

    def gradient_checkpointing_enable(self) -> None:
        if self.llm is None:
            raise ValueError("gradient checkpointing applies to the LLM, which is not loaded")
        self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._llm_train_mode = True
        self.train(self.training)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder, VQ codebook state, decoder and adapter; never Whisper or the LLM."""
        frozen = ("tokenizer.frontend.", "llm.")
        return {k: v.detach().clone() for k, v in self.state_dict().items()
                if not k.startswith(frozen)}

    def forward(self, batch: dict, speech_order: list[int] | None = None) -> dict[str, torch.Tensor]:
        cfg = self.loss_cfg
        waves = [a[:n] for a, n in zip(batch["audio"], batch["audio_lens"].tolist())]
        out = self.tokenizer.encode(waves)
        result = {"commit": out["commit"], "perplexity": out["perplexity"], "usage": out["usage"]}
        loss = out["h"].new_zeros(())
        if cfg.use_commit:
            loss = loss + cfg.alpha * out["commit"]
        if cfg.use_recon:
            result["recon"] = self.tokenizer.reconstruction_loss(out)
            loss = loss + cfg.gamma * result["recon"]
        if cfg.use_under:
            under, acc, _ = self.understanding(out["z"], out["n25"], batch["prompts"], speech_order)
            result.update(under=under, under_acc=acc)
            loss = loss + cfg.beta * under
        result["loss"] = loss
        return result

    def understanding(self, z: torch.Tensor, n25: torch.Tensor, prompts: list,
                      speech_order: list[int] | None = None):
        """Next-token CE of the answers given [prompt, speech]; returns (loss, token accuracy,
        per-example (correct, total) counts). ``speech_order[i]`` = whose speech example i
        hears, -1 for none (controls for probes); default: its own."""
        speech = self.adapter(z, n25)
        embed = self.llm.get_input_embeddings()
        device = speech.device
        inputs, labels = [], []
        for i, (prefix, suffix, answer) in enumerate(prompts):
            j = i if speech_order is None else speech_order[i]
            text = torch.tensor(prefix + suffix + answer, device=device)
            e = embed(text).to(speech.dtype)
            n = int(n25[j]) if j >= 0 else 0
            inputs.append(torch.cat([e[: len(prefix)], speech[j, :n], e[len(prefix):]]))
            labels.append(torch.tensor([IGNORE] * (len(prefix) + n + len(suffix)) + answer,
                                       device=device))
        lengths = torch.tensor([len(x) for x in inputs], device=device)
        x = nn.utils.rnn.pad_sequence(inputs, batch_first=True)
        y = nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE)
        attn = (torch.arange(x.shape[1], device=device) < lengths[:, None]).long()
        hidden = self.llm.base_model(inputs_embeds=x.to(self.llm.dtype), attention_mask=attn).last_hidden_state
        target = y[:, 1:]
        sel = target != IGNORE
        logits = self.llm.get_output_embeddings()(hidden[:, :-1][sel]).float()
        gold = target[sel]
        loss = F.cross_entropy(logits, gold)
        correct = logits.argmax(-1) == gold
        per_example = torch.stack([correct.new_zeros(len(prompts), dtype=torch.long)
                                   .index_add_(0, sel.nonzero()[:, 0], correct.long()),
                                   sel.sum(1)], 1)
        return loss, correct.float().mean(), per_example
