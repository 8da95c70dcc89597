"""The GPU speed paths, checked on CPU: Whisper autocast in USToken extraction (bf16 tokens vs
fp32 tokens on real espeak speech through the real whisper:tiny.en frontend), ASR scoring's
decoding options on CPU vs CUDA and Whisper's temperature fallback, and the decode codec
following the model's device."""
from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import espeak_wave  # noqa: E402

SPEECH = [("please call stella and ask her to bring these things", "en-us"),
          ("the weather is very nice today", "en-us+f2"),
          ("i would like a cup of coffee", "en-gb"),
          ("six spoons of fresh snow peas", "en-us+m3")]
# Measured with this setup: 243 of 244 ids agree (99.6 %) for both frontend modes.
MIN_AGREEMENT = 0.95


# ---- USToken extraction under autocast

@functools.lru_cache(maxsize=None)
def _tokenizer(pad_to_30s: bool):
    """Real Whisper tiny.en frontend, random encoder, codebook k-means-initialised on the speech."""
    from dualspeech.pretrained import load_whisper
    from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
    from dualspeech.tokenizers.ustokenizer.model import USTokenizer

    cfg = USTokenizerConfig(whisper="whisper:tiny.en", pad_to_30s=pad_to_30s, channels=64,
                            vq=VQConfig(codebook_size=64, dim=16, kmeans_init_batches=1, kmeans_iters=10))
    torch.manual_seed(0)
    tok = USTokenizer(cfg, load_whisper("whisper:tiny.en"))
    waves = [torch.from_numpy(espeak_wave(t, v)) for t, v in SPEECH]
    with torch.no_grad():
        tok.train().encode(waves)            # the first training batch initialises the codebook
    return tok.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["trimmed", "pad30s"])
def tokenizer(request):
    return _tokenizer(request.param)


@pytest.fixture(scope="module")
def speech_cuts(tmp_path_factory):
    from lhotse import Recording

    from dualspeech.data.manifest_io import speech_cut

    root = tmp_path_factory.mktemp("speech")
    cuts = []
    for i, (text, voice) in enumerate(SPEECH):
        path = root / f"u{i}.wav"
        sf.write(path, espeak_wave(text, voice), 16000, subtype="PCM_16")
        cuts.append(speech_cut(Recording.from_file(path, recording_id=f"u{i}"), text, "spk"))
    return cuts


def _tokens(tokenizer, cuts, autocast):
    from dualspeech.tokenizers.ustokenizer.extract import tokenize_cuts

    skipped: dict = {}
    out = {cut.id: ids for cut, ids in tokenize_cuts(tokenizer, cuts, skipped, autocast=autocast)}
    assert not skipped
    return out


def test_autocast_bf16_tokens_agree_with_fp32(tokenizer, speech_cuts):
    fp32 = _tokens(tokenizer, speech_cuts, "none")
    default = _tokens(tokenizer, speech_cuts, "auto")                  # on CPU: fp32, exactly
    assert default.keys() == fp32.keys() and all(np.array_equal(default[c], fp32[c]) for c in fp32)
    bf16 = _tokens(tokenizer, speech_cuts, "bf16")
    same = sum(int((bf16[c] == fp32[c]).sum()) for c in fp32)
    total = sum(len(v) for v in fp32.values())
    assert [len(bf16[c]) for c in fp32] == [len(v) for v in fp32.values()]
    assert same / total >= MIN_AGREEMENT, f"{same}/{total} ids agree"
    assert tokenizer.frontend.autocast_dtype is None          # restored after extraction


def test_extract_cli_records_the_whisper_dtype(speech_cuts, tmp_path):
    """--autocast reaches the extractor, is recorded in meta.json, and a storage dir written in
    one precision refuses the other (shards of one extraction never mix precisions)."""
    import json

    from lhotse import CutSet

    from dualspeech.bin import extract_ustokens
    from dualspeech.tokenizers.ustokenizer.checkpoint import PREFIX, save_tokenizer

    tokenizer = _tokenizer(False)
    state = {PREFIX + k: v for k, v in tokenizer.state_dict().items() if not k.startswith("frontend.")}
    ckpt = save_tokenizer(tmp_path / "final.pt", tokenizer.cfg, state, {}, step=1)
    CutSet.from_cuts(speech_cuts).to_file(tmp_path / "cuts.jsonl.gz")

    def run(autocast, name):
        extract_ustokens.main(["--checkpoint", str(ckpt), "--cuts", str(tmp_path / "cuts.jsonl.gz"),
                               "--out-cuts", str(tmp_path / f"{name}.jsonl.gz"), "--device", "cpu",
                               "--storage-dir", str(tmp_path / name), "--autocast", autocast])
        meta = json.loads((tmp_path / name / "meta.json").read_text())
        cuts = CutSet.from_file(tmp_path / f"{name}.jsonl.gz")
        return meta["settings"]["whisper_dtype"], {c.id: c.load_ustokens() for c in cuts}

    dtype32, fp32 = run("auto", "fp32")
    dtype16, bf16 = run("bf16", "bf16")
    assert (dtype32, dtype16) == ("torch.float32", "torch.bfloat16")
    same = sum(int((bf16[c] == fp32[c]).sum()) for c in fp32) / sum(len(v) for v in fp32.values())
    assert same >= MIN_AGREEMENT
    with pytest.raises(RuntimeError, match="changed: .*settings"):
        run("none", "bf16")


def test_autocast_really_runs_whisper_in_bf16(tokenizer):
    from dualspeech.tokenizers.ustokenizer.extract import frontend_autocast

    waves = [torch.from_numpy(espeak_wave(*SPEECH[0]))]
    ref, _ = tokenizer.frontend(waves)
    with frontend_autocast(tokenizer, torch.bfloat16):
        low, _ = tokenizer.frontend(waves)
    assert low.dtype == torch.float32 and not torch.equal(low, ref)   # bf16 inside, fp32 out
    cos = torch.nn.functional.cosine_similarity(low.flatten(), ref.flatten(), dim=0)
    assert cos > 0.99


def test_autocast_choice(monkeypatch):
    from dualspeech.tokenizers.ustokenizer.extract import whisper_autocast_dtype

    assert whisper_autocast_dtype("cpu") is None and whisper_autocast_dtype("cpu", "bf16") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert whisper_autocast_dtype("cuda:0") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert whisper_autocast_dtype("cuda") is torch.float16 and whisper_autocast_dtype("cuda", "none") is None
    with pytest.raises(ValueError, match="autocast must be auto, bf16, fp16, none"):
        whisper_autocast_dtype("cpu", "fp8")


# ---- ASR scoring: fp16 on CUDA, fp32 on CPU, Whisper's temperature fallback

@pytest.fixture(scope="module")
def whisper_tiny():
    from dualspeech.pretrained import load_whisper

    return load_whisper("whisper:tiny.en")


def _transcriber(monkeypatch, whisper_tiny, device):
    """A transcriber built for ``device`` whose model stays on CPU (no GPU in CI)."""
    import dualspeech.pretrained
    from dualspeech.metrics.transcribe import WhisperTranscriber

    monkeypatch.setattr(dualspeech.pretrained, "load_whisper", lambda spec, device="cpu": whisper_tiny)
    return WhisperTranscriber("whisper:tiny.en", device=device, batch_size=4)


@pytest.mark.parametrize("device, fp16", [("cpu", False), ("cuda:1", True)])
def test_transcribe_options_follow_the_device(monkeypatch, whisper_tiny, device, fp16):
    """Options passed to whisper.decode / model.transcribe; the real decode then runs in fp32."""
    import whisper

    from dualspeech.metrics import transcribe as tr

    asr = _transcriber(monkeypatch, whisper_tiny, device)
    seen, real = [], whisper.decode
    monkeypatch.setattr(whisper, "decode", lambda model, mel, options: (
        seen.append(options), real(model, mel, dataclasses.replace(options, fp16=False)))[1])
    texts = asr.transcribe_waves([espeak_wave(*SPEECH[1])])
    assert "weather" in texts[0].lower()                       # still transcribes on CPU
    assert seen[0].fp16 is fp16 and seen[0].temperature == 0.0 and seen[0].without_timestamps
    kw = asr.transcribe_options()
    assert kw["fp16"] is fp16 and kw["temperature"] == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert (kw["compression_ratio_threshold"], kw["logprob_threshold"], kw["no_speech_threshold"]) \
        == (tr.COMPRESSION_RATIO_THRESHOLD, tr.LOGPROB_THRESHOLD, tr.NO_SPEECH_THRESHOLD) == (2.4, -1.0, 0.6)


def test_temperature_fallback_redecodes_only_bad_utterances(monkeypatch, whisper_tiny):
    """Utterance 0 is fine, 1 repeats itself until t=0.4, 2 is unlikely but silent (kept)."""
    import whisper

    asr = _transcriber(monkeypatch, whisper_tiny, "cpu")
    plan = {0: lambda t: (1.5, -0.3, 0.01), 1: lambda t: (3.0 if t < 0.4 else 1.4, -0.5, 0.01),
            2: lambda t: (1.0, -2.0, 0.9)}
    calls = []

    def fake_decode(model, mel, options):
        ids = [int(m[0, 0]) for m in mel]                       # the test marks each mel with its index
        calls.append((options.temperature, ids))
        assert options.sample_len == 50                         # the caller's length cap
        t = options.temperature
        return [SimpleNamespace(text=f" u{i} t{t}", compression_ratio=plan[i](t)[0],
                                avg_logprob=plan[i](t)[1], no_speech_prob=plan[i](t)[2]) for i in ids]

    monkeypatch.setattr(whisper, "decode", fake_decode)
    mels = torch.stack([torch.full((80, 3000), float(i)) for i in range(3)])
    assert asr._decode(mels, 50) == ["u0 t0.0", "u1 t0.4", "u2 t0.0"]
    assert calls == [(0.0, [0, 1, 2]), (0.2, [1]), (0.4, [1])]


# ---- the decode codec on the model's device

def test_decode_codec_follows_the_model_device(tmp_path):
    """A codec with a network is moved to the model's device (here cpu) when decoding starts,
    and the waves it returns are written as files."""
    from dualspeech.config import build
    from dualspeech.data.dataset import DataConfig
    from dualspeech.inference.config import DecodeConfig
    from dualspeech.inference.runner import DecodeRunner
    from dualspeech.testing.toy import toy_data, toy_model
    from dualspeech.tokenizers.codecs.base import Codec

    class NetCodec(Codec):
        name, sample_rate, frame_rate, identity = "net", 16000, 50.0, "net:test"
        units_from = "the test"       # decode only

        def __init__(self, n_codes):
            self.codebook_size, self.moves = n_codes, []
            self.model = torch.nn.Embedding(n_codes, 320)

        def to(self, device):
            self.moves.append(torch.device(device))
            return super().to(device)

        def _decode(self, ids):
            with torch.no_grad():
                return [self.model(torch.from_numpy(s).to(self.device)).flatten().cpu().numpy() for s in ids]

    model, cfg = toy_model("egs/mini/conf/dualspeechlm_debug.yaml", ["model.acoustic_gpt.n_codes=64"])
    codec = NetCodec(64)
    dcfg = build(DecodeConfig, {"batch_size": 2, "text": {"strategy": "greedy", "max_new_tokens": 4},
                                "speech": {"max_new_tokens": 6, "do_sample": False},
                                "acoustic": {"max_len": 8, "top_k": 1}}, "decode")
    runner = DecodeRunner(model, dcfg, codec, DataConfig(max_len=1024))
    device = next(model.parameters()).device
    assert codec.moves == [device] and codec.device == device
    assert next(codec.model.parameters()).device == device
    data = toy_data(tmp_path / "data", cfg, n_per_task=2)
    runner.decode(data, "toy", "test", "tts", tmp_path / "dec")
    wavs = sorted((tmp_path / "dec").rglob("*.wav"))
    assert wavs and all(sf.info(str(w)).samplerate == 16000 for w in wavs)
