"""Stage 6 sizes the model from the extraction meta.json files (dualspeech.models.token_sizes)."""
import json

import pytest

from dualspeech.config import load_yaml
from dualspeech.models.token_sizes import apply_token_sizes, sizes_from_meta

DEBUG = "egs/mini/conf/dualspeechlm_debug.yaml"


def meta(path, field, **settings):
    """A meta.json as dualspeech.tokenizers.extraction writes it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps({
        "field": field, "identity": "x", "settings": settings, "frame_shift": 0.025, "nj": 1,
        "chunk_size": 10, "cut_ids": "h", "num_cuts": 3}))
    return path / "meta.json"


@pytest.fixture
def metas(tmp_path):
    return [meta(tmp_path / "ustokens" / "toy.train", "ustokens", codebook_size=32, whisper="w"),
            meta(tmp_path / "acoustic" / "toy.train", "acoustic_tokens", codebook_size=1024),
            meta(tmp_path / "speaker" / "toy.train", "speaker_embedding", dim=256),
            meta(tmp_path / "speaker" / "toy.dev", "speaker_embedding", dim=256)]


def test_sizes_fill_what_the_config_leaves_out(metas):
    cfg = load_yaml(DEBUG)
    del cfg["model"]["speech"]["num_tokens"], cfg["model"]["acoustic_gpt"]["spk_dim"]
    cfg["model"]["acoustic_gpt"]["n_codes"] = 1024     # set and equal: kept
    decided = apply_token_sizes(cfg, sizes_from_meta(metas))
    assert decided == {"model.speech.num_tokens": 32, "model.acoustic_gpt.n_codes": 1024,
                       "model.acoustic_gpt.spk_dim": 256}
    assert cfg["model"]["speech"]["num_tokens"] == 32
    assert cfg["model"]["acoustic_gpt"]["spk_dim"] == 256


def test_a_disagreeing_config_value_is_an_error(metas):
    cfg = load_yaml(DEBUG)
    cfg["model"]["acoustic_gpt"]["spk_dim"] = 512
    with pytest.raises(ValueError, match=r"model.acoustic_gpt.spk_dim=512 .* size 256"):
        apply_token_sizes(cfg, sizes_from_meta(metas))


def test_sets_extracted_with_different_models_are_an_error(tmp_path, metas):
    other = meta(tmp_path / "acoustic" / "toy.dev", "acoustic_tokens", codebook_size=4096)
    with pytest.raises(ValueError, match="different models"):
        sizes_from_meta(metas + [other])


def test_only_the_fields_the_model_reads(tmp_path, metas):
    cfg = load_yaml(DEBUG)
    cfg["model"]["speech"] = {"field": "hubert_tokens"}
    cfg["model"]["acoustic_gpt"] = None
    hubert = meta(tmp_path / "hubert" / "toy.train", "hubert_tokens", num_clusters=500)
    assert apply_token_sizes(cfg, sizes_from_meta(metas + [hubert])) == {
        "model.speech.num_tokens": 500}
    assert cfg["model"]["acoustic_gpt"] is None


def test_a_file_without_a_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not an extraction meta.json"):
        sizes_from_meta([meta(tmp_path / "x", "ustokens", whisper="w")])


def test_train_stops_before_training_when_config_and_data_disagree(tmp_path):
    from dualspeech.bin.train import main

    spk = meta(tmp_path / "speaker" / "toy.train", "speaker_embedding", dim=512)
    with pytest.raises(ValueError, match=r"spk_dim=256 .* size 512"):
        main(["--conf", DEBUG, "--exp-dir", str(tmp_path / "exp"), "--token-meta", str(spk)])
    assert not (tmp_path / "exp").exists()
