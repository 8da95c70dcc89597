"""Neural codecs that transformers implements (EnCodec, DAC, Mimi), loaded from a local dir
(``save_pretrained`` layout: config.json + weights) or a ``dualspeech.pretrained`` spec.

These are residual-VQ codecs: codebook k refines what codebooks 0..k-1 left. ``num_codebooks``
picks how many of the first codebooks become the acoustic tokens (1 -> ids [N], the single-stream
setting DualSpeechLM's AcousticGPT uses; K > 1 -> ids [N, K]); decoding uses the same prefix.
Clips are encoded one at a time, since zero padding in a batch would change the codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualspeech.config import ConfigError, build
from dualspeech.tokenizers.codecs.base import Codec, register_codec
from dualspeech.utils.io import short_hash

# config.model_type -> (transformers model class, max codebooks attribute of the config)
FAMILIES = {"encodec": ("EncodecModel", "num_quantizers"), "dac": ("DacModel", "n_codebooks"),
            "mimi": ("MimiModel", "num_quantizers")}


@dataclass
class HFCodecOptions:
    """``codec`` section options for ``name: hf``."""
    model: str                 # local dir (config.json + weights) or dualspeech.pretrained spec
    num_codebooks: int = 1     # first K residual codebooks become the tokens


class HFCodec(Codec):
    name = "hf"

    def __init__(self, opts: HFCodecOptions):
        import transformers

        from dualspeech.pretrained import resolve

        path = resolve(opts.model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"codec.model: {path} has no config.json; give a dir written by "
                                    "save_pretrained (e.g. a download of facebook/encodec_24khz)")
        cfg = transformers.AutoConfig.from_pretrained(path)
        if cfg.model_type not in FAMILIES:
            raise ConfigError(f"codec.model: {path} is a {cfg.model_type!r} model; the hf codec "
                              f"supports {sorted(FAMILIES)}")
        self.family = cfg.model_type
        self.model = getattr(transformers, FAMILIES[self.family][0]).from_pretrained(path).eval()
        limit = int(getattr(cfg, FAMILIES[self.family][1]))   # EnCodec: at its top bandwidth
        if not 1 <= opts.num_codebooks <= limit:
            raise ConfigError(f"codec.num_codebooks must be in 1..{limit} for {path}")
        self.num_codebooks = opts.num_codebooks
        self.sample_rate = int(cfg.sampling_rate)
        self.frame_rate = float(cfg.frame_rate)
        self.codebook_size = int(cfg.codebook_size)
        self._bandwidth = max(cfg.target_bandwidths) if self.family == "encodec" else None
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        self._identity = (f"hf:{self.family}:{path.name}@"
                          f"{short_hash(weights[0]) if weights else 'noweights'}:k{self.num_codebooks}")

    @property
    def identity(self) -> str:
        return self._identity

    @torch.inference_mode()
    def codes(self, wave: np.ndarray) -> torch.Tensor:
        """All codebooks the model produces for one wave: [K_model, N]."""
        x = torch.from_numpy(wave)[None, None].to(self.device)
        if self.family == "encodec":
            out = self.model.encode(x, bandwidth=self._bandwidth)
        elif self.family == "dac":
            out = self.model.encode(x, n_quantizers=self.num_codebooks)
        else:
            out = self.model.encode(x, num_quantizers=self.num_codebooks)
        codes = out.audio_codes
        return codes.reshape(-1, *codes.shape[-2:])[0]

    def _encode(self, waves):
        out = []
        for w in waves:
            ids = self.codes(w)[: self.num_codebooks].T.cpu().numpy()   # [N, K]
            out.append(ids[:, 0] if self.num_codebooks == 1 else ids)
        return out

    @torch.inference_mode()
    def _decode(self, ids):
        out = []
        for seq in ids:
            codes = torch.from_numpy(seq.reshape(len(seq), -1).T.copy())[None].to(self.device)  # [1, K, N]
            if self.family == "encodec":
                wave = self.model.decode(codes[None], [None]).audio_values
            elif self.family == "dac":
                wave = self.model.decode(audio_codes=codes).audio_values
            else:
                wave = self.model.decode(codes).audio_values
            out.append(wave.reshape(-1).float().cpu().numpy())
        return out


@register_codec("hf")
def _build(options: dict) -> HFCodec:
    return HFCodec(build(HFCodecOptions, options, where="codec"))
