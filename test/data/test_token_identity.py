"""Identity end to end (issue 27 item 2): ids made by one tokenizer are never read as another's.
Shards record the identities of their cuts and refuse sets that disagree; training records
those of its shards; decoding refuses test cuts or a codec of other tokenizers, naming both
identities and the command that fixes it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from lhotse import CutSet

from dualspeech.bin import decode, train, write_shards
from dualspeech.data import token_identity
from dualspeech.data.shards import ShardSet
from dualspeech.models.io import export_model
from dualspeech.testing.toy import toy_codec, toy_data, toy_model
from dualspeech.testing.toy_corpus import write_toy_corpus

DEBUG = "egs/mini/conf/dualspeechlm_debug.yaml"
A = {"ustokens": "ustokenizer:aaaaaaaaaaaa", "acoustic_tokens": "melvq:melvq.pt@aaaaaaaaaaaa",
     "speaker_embedding": "resemblyzer:r.pt@aaaaaaaaaaaa"}


def stamp(path, identities: dict) -> None:
    """Rewrite a speech cut manifest as if extraction had recorded these identities."""
    cuts = []
    for cut in CutSet.from_file(path):
        for field, ident in identities.items():
            cut = cut.with_custom(f"{field}_source", ident)
        cuts.append(cut)
    CutSet.from_cuts(cuts).to_file(path)


def test_cuts_of_one_set_from_two_tokenizers_are_refused(tmp_path):
    data = write_toy_corpus(tmp_path, "toy", "train", n_per_task=1)
    path = data / "cuts/toy_cuts_train.jsonl.gz"
    cuts = list(CutSet.from_file(path))
    cuts = [c.with_custom("ustokens_source", f"ustokenizer:{i % 2}") for i, c in enumerate(cuts)]
    with pytest.raises(token_identity.TokenIdentityError, match=r"2 different tokenizers "
                       r"\(ustokenizer:0, ustokenizer:1\).*--stage 3 --force true"):
        token_identity.cut_identities(cuts, str(path))


def test_shards_record_identities_and_refuse_sets_that_disagree(tmp_path):
    data = tmp_path / "data"
    for part in ("train", "dev"):
        write_toy_corpus(data, "toy", part, n_per_task=1, num_speech_tokens=32, n_codes=1024,
                         spk_dim=256)
    stamp(data / "cuts/toy_cuts_train.jsonl.gz", A)
    other = {**A, "acoustic_tokens": "melvq:melvq.pt@bbbbbbbbbbbb"}
    stamp(data / "cuts/toy_cuts_dev.jsonl.gz", other)
    args = ["--conf", DEBUG, "--data-root", str(data), "--shard-size", "4"]
    write_shards.main([*args, "--sets", "toy:train"])
    shards = ShardSet(data / "shards/toy_train")
    assert shards.index["token_identities"] == A
    with pytest.raises(SystemExit, match="acoustic_tokens: the sets before was made with "
                       "melvq:melvq.pt@aaaaaaaaaaaa but toy:dev .* with melvq:melvq.pt@bbbbbbbbbbbb"):
        write_shards.main([*args, "--sets", "toy:train", "toy:dev"])
    # training reads them from its shards (and refuses train/valid shards that disagree)
    assert train.shard_identities(SimpleNamespace(sets=[shards]), None) == A
    foreign = SimpleNamespace(path="dev", index={"token_identities": other})
    with pytest.raises(SystemExit, match="bbbbbbbbbbbb"):
        train.shard_identities(SimpleNamespace(sets=[shards]), SimpleNamespace(sets=[foreign]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ident")
    model, cfg = toy_model(DEBUG, ["model.acoustic_gpt.n_codes=64"])
    model_dir = export_model(model, tmp / "exp/model")
    data = toy_data(tmp / "data", cfg, n_per_task=1)
    codec = toy_codec(tmp / "melvq.pt", 64)
    (tmp / "codec.yaml").write_text(yaml.safe_dump(
        {"codec": {"name": "melvq", "checkpoint": str(tmp / "melvq.pt"), "griffin_lim_iters": 2}}))
    return tmp, model_dir, data, codec.identity


def run_decode(tmp, model_dir, data, task: str):
    return decode.main(["--conf", "egs/mini/conf/decode_mini.yaml", "--model", str(model_dir),
                        "--data-root", str(data), "--sources", "toy:test", "--tasks", task,
                        "--out-dir", str(tmp / "decode"), "--codec-conf", str(tmp / "codec.yaml"),
                        "--set", "decode.acoustic.max_len=4", "--set", "decode.speech.max_new_tokens=3",
                        "--set", "decode.text.max_new_tokens=3"])


def test_decode_refuses_another_codec_and_other_test_tokens(exported):
    tmp, model_dir, data, codec_id = exported
    trained = {**A, "acoustic_tokens": "melvq:melvq.pt@000000000000"}
    token_identity.write(tmp / "exp", trained)                 # what training recorded
    with pytest.raises(SystemExit) as e:
        run_decode(tmp, model_dir, data, "tts")
    msg = str(e.value)
    assert "melvq:melvq.pt@000000000000" in msg and codec_id in msg and "./run.sh --stage 4" in msg
    token_identity.write(tmp / "exp", {**A, "acoustic_tokens": codec_id})
    stamp(data / "cuts/toy_cuts_test.jsonl.gz", {"ustokens": "ustokenizer:bbbbbbbbbbbb"})
    with pytest.raises(SystemExit, match="ustokens: the model .* expects ustokenizer:aaaaaaaaaaaa "
                       "but .*toy_cuts_test.jsonl.gz has ustokenizer:bbbbbbbbbbbb.*--stage 3"):
        run_decode(tmp, model_dir, data, "asr")
    stamp(data / "cuts/toy_cuts_test.jsonl.gz", {"ustokens": A["ustokens"]})
    summary = run_decode(tmp, model_dir, data, "tts")              # the same tokenizers: decodes
    assert summary["toy_tts_test"]["merged"]
    saved = yaml.safe_load((tmp / "decode/toy_tts_test/decode_config.yaml").read_text())
    assert saved["codec_identity"] == codec_id


def test_speech_rows_from_another_ustokenizer_are_refused(tmp_path):
    ckpt = tmp_path / "final.pt"
    ckpt.write_bytes(b"a tokenizer")
    cfg = {"model": {"speech_init": {"method": "ustokenizer", "ustokenizer_ckpt": str(ckpt)}}}
    with pytest.raises(SystemExit, match="ustokenizer_ckpt=.*expects ustokenizer:[0-9a-f]{12} but "
                       "the training shards. index has ustokenizer:aaaaaaaaaaaa"):
        train.check_speech_init(cfg, A)
