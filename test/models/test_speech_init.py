"""DualSpeechLM's speech rows: USTokenizer init (adapter applied to the codebook) and the old
mean + noise init, both selectable from the config (dualspeech.models.speech_init)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualspeech.config import ConfigError, load_config
from dualspeech.models.dualspeechlm import DualSpeechLM
from dualspeech.models.speech_init import init_new_rows
from dualspeech.pretrained import load_causal_lm, load_whisper
from dualspeech.tokenizers.ustokenizer.checkpoint import save_tokenizer
from dualspeech.tokenizers.ustokenizer.config import LossConfig, USTokenizerConfig, VQConfig
from dualspeech.tokenizers.ustokenizer.model import USTokenizer, USTokenizerTraining

ROOT = Path(__file__).resolve().parents[2]
DEBUG_CONF = ROOT / "egs/mini/conf/dualspeechlm_debug.yaml"
K = 16


@pytest.fixture(scope="module")
def ust(tmp_path_factory):
    """(final.pt of a random tiny USTokenizer with an adapter into llama-debug, its wrapper)."""
    torch.manual_seed(3)
    cfg = USTokenizerConfig(whisper="random:whisper-debug", channels=16,
                            vq=VQConfig(codebook_size=K, dim=8))
    tok = USTokenizer(cfg, load_whisper(cfg.whisper))
    tok.vq.codebook.normal_()
    tok.vq.initialized.fill_(True)
    llm, _ = load_causal_lm("random:llama-debug")
    training = USTokenizerTraining(tok, LossConfig(), llm)
    for p in training.adapter.parameters():   # non-trivial bias / side taps
        torch.nn.init.normal_(p, std=0.3)
    path = tmp_path_factory.mktemp("ust") / "final.pt"
    save_tokenizer(path, cfg, training.trainable_state_dict(), {}, step=1)
    return path, training


def build(*overrides: str) -> DualSpeechLM:
    cfg = load_config(DEBUG_CONF, [f"model.speech.num_tokens={K}", "model.lora.rank=0",
                                   "+model.acoustic_gpt=null", *overrides])
    return DualSpeechLM.from_config(cfg)


def test_rows_are_the_adapter_on_the_codebook(ust):
    path, training = ust
    model = build("+model.speech_init.method=ustokenizer",
                  f"+model.speech_init.ustokenizer_ckpt={path}", "+model.speech_init.scale=adapter")
    # the adapter module itself, on each code as a length-1 sequence (conv zero padding)
    codebook = training.tokenizer.vq.codebook
    with torch.no_grad():
        expected = training.adapter(codebook[:, None, :], torch.ones(K, dtype=torch.long))[:, 0]
    torch.testing.assert_close(model.speech_embed[:K], expected)
    old = build()
    # begin/end-of-audio are no codes: they keep the old init
    torch.testing.assert_close(model.speech_embed[K:], old.speech_embed[K:])

    scaled = build("+model.speech_init.method=ustokenizer",   # the default scale: text_rms
                   f"+model.speech_init.ustokenizer_ckpt={path}")
    text_rows = scaled.backbone.get_input_embeddings().weight[:scaled.vocab.text_vocab_size]
    torch.testing.assert_close(scaled.speech_embed[:K].norm(dim=1).mean(),
                               text_rows.norm(dim=1).mean())
    ratio = scaled.speech_embed[:K] / expected
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))


def test_old_init_stays_the_default_and_selectable(ust):
    path, _ = ust
    default = build()
    explicit = build("+model.speech_init.method=mean_noise",
                     f"+model.speech_init.ustokenizer_ckpt={path}")
    text_rows = default.backbone.get_input_embeddings().weight[:default.vocab.text_vocab_size]
    gen = torch.Generator().manual_seed(default.cfg.seed)
    expected = init_new_rows(text_rows, K + 2, default.cfg.init_noise, gen)
    torch.testing.assert_close(default.speech_embed, expected)
    torch.testing.assert_close(explicit.speech_embed, expected)


def test_bad_settings_are_clear_errors(ust, tmp_path):
    path, _ = ust
    with pytest.raises(ValueError, match="needs model.speech_init.ustokenizer_ckpt"):
        build("+model.speech_init.method=ustokenizer")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build("+model.speech_init.method=ustokenizer",
              f"+model.speech_init.ustokenizer_ckpt={tmp_path / 'none.pt'}")
    with pytest.raises(ValueError, match="model needs 8 speech rows"):
        DualSpeechLM.from_config(load_config(DEBUG_CONF, [
            "model.speech.num_tokens=8", "model.lora.rank=0", "+model.acoustic_gpt=null",
            "+model.speech_init.method=ustokenizer",
            f"+model.speech_init.ustokenizer_ckpt={path}"]))
    with pytest.raises((ValueError, ConfigError), match="method"):
        build("+model.speech_init.method=random")


def test_loading_a_trained_model_needs_no_tokenizer_file(ust, tmp_path):
    """Trained rows come from the checkpoint: load_model must not read the (moved) final.pt."""
    import shutil

    from dualspeech.models.io import export_model, load_model

    moved = tmp_path / "final.pt"
    shutil.copy(ust[0], moved)
    model = build("+model.speech_init.method=ustokenizer",
                  f"+model.speech_init.ustokenizer_ckpt={moved}")
    out = export_model(model, tmp_path / "exported")
    moved.unlink()
    loaded = load_model(out)
    torch.testing.assert_close(loaded.speech_embed, model.speech_embed)


@pytest.mark.parametrize("conf, method", [("dualspeechlm_mini.yaml", "ustokenizer"),
                                          ("dualspeechlm_debug.yaml", "mean_noise")])
def test_recipe_configs_choose_the_init(conf, method, capsys):
    """The demo starts from its USTokenizer; the debug config (built by tests without one) does
    not. The pipeline's stage 6 reads this key to pass stage 3's final.pt."""
    from dualspeech.bin.resolve_config import main
    from dualspeech.config import build
    from dualspeech.models.dualspeechlm import ModelConfig

    path = ROOT / "egs/mini/conf" / conf
    main([str(path), "--get", "model.speech_init.method"])
    assert capsys.readouterr().out.strip() == method
    model_cfg = build(ModelConfig, load_config(path)["model"], "model")
    assert model_cfg.speech_init.method == method
    pipeline = (ROOT / "egs/TEMPLATE/pipeline.sh").read_text()
    assert '--set "model.speech_init.ustokenizer_ckpt=$init_ckpt"' in pipeline
