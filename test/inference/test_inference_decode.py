"""Decoding all 8 tasks with a random tiny DualSpeechLM (real architecture) on the toy token
corpus: outputs, batching, resume, shards, guard rails."""
import json
import re

import pytest
import soundfile as sf

from dualspeech.data.tasks import TASKS
from dualspeech.inference.runner import manifest_ids
from dualspeech.testing.toy import toy_codec, toy_data, toy_model
from dualspeech.testing.toy import toy_decode_runner

CONF = "egs/mini/conf/dualspeechlm_debug.yaml"
SMALL_CODEC = ["model.acoustic_gpt.n_codes=64"]   # a quick k-means for the toy codec


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, cfg = toy_model(CONF, SMALL_CODEC)
    codec = toy_codec(tmp_path_factory.mktemp("codec") / "melvq.pt",
                      cfg["model"]["acoustic_gpt"]["n_codes"], griffin_lim_iters=2)
    return model, cfg, codec


@pytest.fixture
def model(setup):
    return setup[0]


@pytest.fixture
def codec(setup):
    return setup[2]


@pytest.fixture
def data(setup, tmp_path):
    return toy_data(tmp_path / "data", setup[1], n_per_task=5)


def read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_decode_all_tasks(model, codec, data, tmp_path):
    dec = toy_decode_runner(model, codec, acoustic={"max_len": 12, "top_k": 10})   # sampled
    out = tmp_path / "decode"
    for task in TASKS:
        counts = dec.decode(data, "toy", "test", task, out, resolved_config={"decode": {}})
        assert counts["merged"] and counts["skipped"] == 0
        recs = read(out / f"toy_{task}_test" / "hyp.jsonl")
        assert len(recs) == 5 and [r["id"] for r in recs] == sorted(r["id"] for r in recs)
        assert all(r["task"] == task and r["ref"] for r in recs)
        if TASKS[task].kind == "understanding":
            assert all("text" in r and r["status"] in ("ok", "empty", "max_new_tokens")
                       for r in recs)
            assert (out / f"toy_{task}_test" / "text").is_file()
        else:
            # a random model never says end-of-audio: the guard stops it and says so
            assert {r["status"] for r in recs} == {"no_eoa"}
            for r in recs:
                assert r["n_speech_tokens"] == 8 and 0 < r["n_acoustic"] <= 12
                wave, sr = sf.read(out / f"toy_{task}_test" / r["wav"])
                assert sr == codec.sample_rate and len(wave) > 0
        stats = json.loads((out / f"toy_{task}_test" / "stats.json").read_text())
        assert stats["n"] == 5
    assert (out / "toy_asr_test" / "decode_config.yaml").is_file()


def test_batched_equals_one_at_a_time(model, codec, data, tmp_path):
    """Left-padded batches give the same greedy outputs as batch size 1: the text, the speech
    token ids and the AcousticGPT ids (deterministic decoding), not only their counts."""
    from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples

    dec = toy_decode_runner(model, codec, speech={"max_new_tokens": 8, "do_sample": False},
                       acoustic={"max_len": 12, "top_k": 1})
    for task in ("asr", "sqa", "tts", "vc"):
        exs = load_examples(data, ["toy:test"], tasks=(task,))[task]
        ds = TaskDataset({task: exs}, model.templates, DataConfig(max_len=1024),
                         model.acoustic_spec())
        exs = ds.examples[task]
        assert len({len(ds.encode(ex, with_answer=False).input_ids) for ex in exs}) > 1
        kind = TASKS[task].kind
        batched = dec.generator(kind, ds.collate_prompts(exs[:4]))
        single = [dec.generator(kind, ds.collate_prompts([ex]))[0] for ex in exs[:4]]
        got = {name: [(o.text, o.speech_ids, o.acoustic_ids) for o in outs]
               for name, outs in (("batched", batched), ("single", single))}
        assert got["batched"] == got["single"], task
        if kind == "generation":
            assert all(o.speech_ids and o.acoustic_ids for o in batched)


def test_beam_with_one_beam_equals_greedy(model, codec, data, tmp_path):
    """Beam search goes through the backbone's generate; with 1 beam it must be greedy."""
    got = {}
    for strategy in ("greedy", "beam"):
        dec = toy_decode_runner(model, codec, text={"strategy": strategy, "num_beams": 1,
                                               "max_new_tokens": 6})
        dec.decode(data, "toy", "test", "asr", tmp_path / strategy)
        got[strategy] = [r["text"] for r in read(tmp_path / strategy / "toy_asr_test" / "hyp.jsonl")]
    assert got["greedy"] == got["beam"]
    dec = toy_decode_runner(model, codec, text={"strategy": "beam", "num_beams": 3, "max_new_tokens": 6})
    dec.decode(data, "toy", "test", "ser", tmp_path / "beam3")
    assert len(read(tmp_path / "beam3" / "toy_ser_test" / "hyp.jsonl")) == 5


def test_resume_and_shards(model, codec, data, tmp_path):
    out = tmp_path / "decode"
    dec = toy_decode_runner(model, codec)
    c0 = dec.decode(data, "toy", "test", "tts", out, shard=0, num_shards=2)
    assert not c0["merged"] and not (out / "toy_tts_test" / "hyp.jsonl").exists()
    c1 = dec.decode(data, "toy", "test", "tts", out, shard=1, num_shards=2)
    assert c1["merged"]
    merged = read(out / "toy_tts_test" / "hyp.jsonl")
    assert len(merged) == 5
    # kill simulation: drop the last record of shard 0 and leave a torn line
    shard0 = out / "toy_tts_test" / "shards" / "hyp.0of2.jsonl"
    lines = shard0.read_text().splitlines()
    shard0.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])
    again = dec.decode(data, "toy", "test", "tts", out, shard=0, num_shards=2)
    assert again["done_before"] == len(lines) - 1 and again.get("no_eoa") == 1
    assert read(out / "toy_tts_test" / "hyp.jsonl") == merged
    done = dec.decode(data, "toy", "test", "tts", out, shard=0, num_shards=2)
    assert done["done_before"] == len(lines) and "no_eoa" not in done


def test_guard_rails_skip_and_error(model, codec, data, tmp_path, monkeypatch):
    from lhotse import CutSet

    # an example whose speech cut lost its tokens is recorded as skipped, not dropped
    path = data / "cuts" / "toy_cuts_test.jsonl.gz"
    cuts = CutSet.from_file(path).to_eager()
    asr = CutSet.from_file(data / "tasks" / "toy_asr_test.jsonl.gz").to_eager()
    victim = asr[0].id
    fixed = [c if c.id != victim else c.drop_custom("ustokens") for c in cuts]
    CutSet.from_cuts(fixed).to_file(path)
    dec = toy_decode_runner(model, codec)
    real = dec.generator.text

    def flaky(batch):   # fails for any batch containing one particular example
        if asr[1].id in batch["ids"]:
            raise RuntimeError("boom")
        return real(batch)

    monkeypatch.setattr(dec.generator, "text", flaky)
    counts = dec.decode(data, "toy", "test", "asr", tmp_path / "d")
    recs = {r["id"]: r for r in read(tmp_path / "d" / "toy_asr_test" / "hyp.jsonl")}
    assert counts["skipped"] == 1 and recs[victim]["status"] == "skipped"
    assert recs[asr[1].id]["status"] == "error" and "boom" in recs[asr[1].id]["error"]
    assert sum(r["status"] in ("ok", "empty", "max_new_tokens") for r in recs.values()) == 3


def test_unavailable_output_path_fails_its_task_alone(model, codec, data, tmp_path):
    """A codec that does not match the model's ids (or none): the generation test sets are
    recorded as no_output_path with the reason, counted; understanding test sets decode; a
    re-run with the right codec decodes the failed ones."""
    wrong = toy_codec(tmp_path / "small.pt", 32, griffin_lim_iters=2)
    for bad in (wrong, None):
        out = tmp_path / f"d_{bad is None}"
        dec = toy_decode_runner(model, bad)
        counts = dec.decode(data, "toy", "test", "tts", out)
        assert counts["no_output_path"] == 5 and counts["merged"]
        recs = read(out / "toy_tts_test" / "hyp.jsonl")
        assert {r["status"] for r in recs} == {"no_output_path"}
        assert re.search("n_codes=64 but the codec .* has 32 codes" if bad else "no codec",
                         recs[0]["error"])
        stats = json.loads((out / "toy_tts_test" / "stats.json").read_text())
        assert stats["status"] == {"no_output_path": 5}
        assert dec.decode(data, "toy", "test", "asr", out)["merged"]
        assert "no_output_path" not in read(out / "toy_asr_test" / "hyp.jsonl")[0]["status"]
    again = toy_decode_runner(model, codec).decode(data, "toy", "test", "tts", out)
    assert again.get("no_output_path", 0) == 0 and again["done_before"] == 0
    assert all("wav" in r for r in read(out / "toy_tts_test" / "hyp.jsonl"))


def test_membership_does_not_depend_on_the_ground_truth(model, codec, data, tmp_path):
    """TTS test examples whose target speech has no tokens at all (or very many) are still
    decoded: only the prompt decides whether an example can be decoded."""
    from lhotse import CutSet

    tts = CutSet.from_file(data / "tasks" / "toy_tts_test.jsonl.gz").to_eager()
    targets = {c.id for c in tts}
    path = data / "cuts" / "toy_cuts_test.jsonl.gz"
    cuts = [c.drop_custom("ustokens").drop_custom("acoustic_tokens") if c.id in targets else c
            for c in CutSet.from_file(path)]
    CutSet.from_cuts(cuts).to_file(path)
    counts = toy_decode_runner(model, codec).decode(data, "toy", "test", "tts", tmp_path / "d")
    recs = read(tmp_path / "d" / "toy_tts_test" / "hyp.jsonl")
    assert counts["skipped"] == 0 and len(recs) == 5
    assert {r["status"] for r in recs} == {"no_eoa"} and all("wav" in r for r in recs)


def test_speaker_prompt_comes_from_speaker_ref(model, codec, data, tmp_path):
    """The saved prompt is the speaker_ref utterance (resampled to 16 kHz), never the target."""
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording
    from lhotse.utils import fastcopy

    path = data / "cuts" / "toy_cuts_test.jsonl.gz"
    cuts = []
    for i, c in enumerate(CutSet.from_file(path)):
        wav = tmp_path / "audio" / f"{c.id}.wav"
        wav.parent.mkdir(exist_ok=True)
        t = np.arange(int(22050 * (c.duration + 0.1))) / 22050
        sf.write(wav, 0.2 * np.sin(2 * np.pi * (200 + 10 * i) * t), 22050)
        cuts.append(fastcopy(c, recording=Recording.from_file(wav, recording_id=c.id)))
    CutSet.from_cuts(cuts).to_file(path)
    by_id = {c.id: c for c in cuts}
    toy_decode_runner(model, codec).decode(data, "toy", "test", "tts", tmp_path / "d")
    tasks = {c.id: c for c in CutSet.from_file(data / "tasks" / "toy_tts_test.jsonl.gz")}
    for r in read(tmp_path / "d" / "toy_tts_test" / "hyp.jsonl"):
        ref_id = tasks[r["id"]].custom["links"]["speaker_ref"]
        assert r["speaker_ref"] == ref_id != r["id"]
        wave, sr = sf.read(tmp_path / "d" / "toy_tts_test" / r["prompt_wav"])
        assert sr == 16000 and abs(len(wave) / sr - by_id[ref_id].duration) < 0.01


def test_max_examples_and_acoustic_length_ratio(model, codec, data, tmp_path):
    """max_examples decodes the first N sorted ids; maxlenratio caps codec frames per speech
    token (the random model never ends by itself, so every example stops at the ratio cap)."""
    dec = toy_decode_runner(model, codec, max_examples=3,
                       acoustic={"max_len": 12, "top_k": 1, "maxlenratio": 0.5})
    counts = dec.decode(data, "toy", "test", "tts", tmp_path / "d", shard=0, num_shards=2)
    counts.update(dec.decode(data, "toy", "test", "tts", tmp_path / "d", shard=1, num_shards=2))
    recs = read(tmp_path / "d" / "toy_tts_test" / "hyp.jsonl")
    all_ids, _ = manifest_ids(data / "tasks" / "toy_tts_test.jsonl.gz")
    assert counts["merged"] and len(all_ids) == 5
    assert [r["id"] for r in recs] == all_ids[:3]
    assert all(r["n_speech_tokens"] == 8 and r["n_acoustic"] == 4 for r in recs)
    with pytest.raises(ValueError, match="maxlenratio"):
        toy_decode_runner(model, codec, acoustic={"maxlenratio": 0})


def test_max_examples_by_task_overrides_the_cap(model, codec, data, tmp_path):
    """A per-task cap (null: the whole set) replaces max_examples for that task only."""
    dec = toy_decode_runner(model, codec, max_examples=2, max_examples_by_task={"asr": None})
    for task in ("asr", "ser"):
        dec.decode(data, "toy", "test", task, tmp_path / "d", shard=0, num_shards=1)
    n = {t: len(read(tmp_path / "d" / f"toy_{t}_test" / "hyp.jsonl")) for t in ("asr", "ser")}
    all_asr, _ = manifest_ids(data / "tasks" / "toy_asr_test.jsonl.gz")
    assert n == {"asr": len(all_asr), "ser": 2} and len(all_asr) > 2
    with pytest.raises(ValueError, match="unknown task"):
        toy_decode_runner(model, codec, max_examples_by_task={"asrr": 1})
