"""Every YAML config shipped under egs/ parses, and builds with the code that reads it.

Each config is recognised by its top-level sections and validated by its owner's typed builder
(unknown key or wrong type -> ConfigError with the dotted path); debug-size models are built for
real (random tiny weights). Accelerate / DeepSpeed launcher configs under conf/launch/ are read
by those tools, so they only have to parse. A config no builder recognises fails the test: a new
kind of config needs a line in KINDS.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dualspeech.config import build, load_yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (REPO / "egs").glob("*/conf/**/*.yaml"))


def check_ustokenizer(cfg: dict) -> None:
    from dualspeech.bin.train_ustokenizer import read_sections

    read_sections(cfg)


def check_dualspeechlm(cfg: dict) -> None:
    from dualspeech.data.dataset import DataConfig
    from dualspeech.models.dualspeechlm import DualSpeechLM, ModelConfig
    from dualspeech.data.templates import TemplateConfig
    from dualspeech.training import TrainerConfig

    model = build(ModelConfig, cfg.get("model"), "model")
    build(TemplateConfig, cfg.get("templates"), "templates")
    build(DataConfig, cfg.get("data"), "data")
    build(TrainerConfig, cfg.get("trainer"), "trainer")
    if str(model.llm).startswith("random:"):            # debug size: build it for real
        assert sum(p.numel() for p in DualSpeechLM.from_config(cfg).parameters()) > 0


def check_decode(cfg: dict) -> None:
    from dualspeech.inference.config import DecodeConfig

    build(DecodeConfig, cfg["decode"], "decode")


def check_score(cfg: dict) -> None:
    from dualspeech.metrics.scoring import ScoreConfig

    build(ScoreConfig, cfg["score"], "score")


def check_codec(cfg: dict) -> None:
    from dualspeech.tokenizers.codecs import CODEC_TRAINERS, CODECS
    from dualspeech.tokenizers.codecs.melvq import MelVQOptions, MelVQTrainConfig

    section = dict(cfg["codec"])
    name = section.pop("name")
    assert name in CODECS, f"codec.name {name!r} is not a registered codec ({sorted(CODECS)})"
    trainer = CODEC_TRAINERS.get(name)
    if trainer is not None and trainer.section in cfg:   # trained by stage 4 from this section
        build(trainer.config_cls, cfg[trainer.section], trainer.section)
    if name == "melvq":
        build(MelVQOptions, section, "codec")
        build(MelVQTrainConfig, cfg.get("melvq_train"), "melvq_train").features.validate()


def check_speaker(cfg: dict) -> None:
    from dualspeech.tokenizers.speaker import SPEAKER_ENCODERS

    name = cfg["speaker"].get("name")
    assert name in SPEAKER_ENCODERS, f"speaker.name {name!r} not in {sorted(SPEAKER_ENCODERS)}"


def check_hubert(cfg: dict) -> None:
    from dualspeech.tokenizers.hubert import HubertConfig

    build(HubertConfig, cfg["hubert"], "hubert")


# (section that identifies the kind, builder)
KINDS = (("ustokenizer", check_ustokenizer), ("model", check_dualspeechlm),
         ("decode", check_decode), ("score", check_score), ("codec", check_codec),
         ("speaker", check_speaker), ("hubert", check_hubert))


def test_configs_are_shipped():
    assert CONFIGS, "no YAML configs under egs/*/conf"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "egs")))
def test_config_parses_and_builds(path):
    cfg = load_yaml(path)
    assert cfg, f"{path} is empty"
    if "launch" in path.relative_to(REPO / "egs").parts:
        return
    checks = [check for section, check in KINDS if section in cfg]
    assert checks, f"{path}: no builder for sections {sorted(cfg)}; add one to KINDS"
    checks[0](cfg)


@pytest.mark.parametrize("recipe, codec, models", [
    ("mini", "mini/conf/codec_melvq.yaml", ["dualspeechlm_debug.yaml"]),
    ("mini", "mini/conf/codec_vqmel.yaml", ["dualspeechlm_mini.yaml"]),
    ("mini", "codec/conf/codec_unitmel.yaml", ["dualspeechlm_mini.yaml"]),   # --train-codec true
    ("multitask", "multitask/conf/codec_melvq.yaml", ["dualspeechlm_phi35.yaml",
                                                      "dualspeechlm_vicuna7b.yaml"]),
])
def test_codec_size_matches_acoustic_gpt(recipe, codec, models):
    """Stage 4 trains the codec from one config, stage 6 sizes the AcousticGPT from another
    (egs/mini/run.sh: MelVQ for --size tiny, Unit-Mel for the demo sizes)."""
    train = {k: v for k, v in load_yaml(REPO / "egs" / codec).items() if k.endswith("_train")}
    (section,) = train.values()
    size = section.get("codebook_size") or section["arch"]["codebook_size"]
    for name in models:
        assert load_yaml(REPO / "egs" / recipe / "conf" / name)["model"]["acoustic_gpt"]["n_codes"] == size, name


@pytest.mark.parametrize("model", ["dualspeechlm_hubert.yaml", "baseline_semantic.yaml"])
def test_hubert_units_match_the_kmeans_tokenizer(model):
    """The LLM reads the field extract_hubert writes, with as many unit tokens as clusters."""
    from dualspeech.bin.extract_hubert import FIELD

    conf = REPO / "egs" / "multitask" / "conf"
    speech = load_yaml(conf / model)["model"]["speech"]
    assert speech["field"] == FIELD
    assert speech["num_tokens"] == load_yaml(conf / "hubert_kmeans.yaml")["hubert"]["num_clusters"]
