"""Training shards (stage 5) and the streamed dataset: same batches as the in-memory dataset,
Shar-readable files, resume after a kill, bad shards named, tokenizer mismatch refused, bounded
open files; sampler state_dict resumes exactly."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dualspeech.bin import write_shards
from dualspeech.models.dualspeechlm import build_templates
from dualspeech.config import build, load_config
from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
from dualspeech.data.sampler import SamplerConfig, TaskBatchSampler
from dualspeech.data.shards import ShardError, ShardReader, ShardSet, ShardWriter
from dualspeech.data.streaming import ShardDataset
from dualspeech.data.token_layout import AcousticSpec
from dualspeech.testing.toy_corpus import write_toy_corpus

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
ACOUSTIC = AcousticSpec("acoustic_tokens", 1024, 256, 1024, 2048)


def write(data: Path, *extra: str) -> dict:
    return write_shards.main(["--conf", str(DEBUG), "--data-root", str(data), "--sets", "toy:train",
                              "--shard-size", "4", *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = write_toy_corpus(tmp_path_factory.mktemp("shards") / "data", "toy", "train",
                            n_per_task=7, num_speech_tokens=32, n_codes=1024, spk_dim=256)
    write(data)
    templates, _ = build_templates(load_config(DEBUG))
    return data, templates


def shard_dir(data: Path) -> Path:
    return data / "shards" / "toy_train"


def test_streamed_batches_equal_in_memory_batches(corpus):
    data, templates = corpus
    cfg = build(DataConfig, load_config(DEBUG)["data"], "data")
    streamed = ShardDataset(data, ["toy:train"], templates, cfg.max_len, ACOUSTIC)
    memory = TaskDataset(load_examples(data, ["toy:train"]), templates, cfg, ACOUSTIC)
    assert set(streamed.lengths) == set(memory.lengths) and len(streamed.lengths) == 8
    for task in memory.lengths:
        assert list(streamed.lengths[task]) == memory.lengths[task]
        batch = [(task, i) for i in (6, 0, 3, 4)]      # across shards of 4
        a, b = streamed[batch], memory[batch]
        assert a.keys() == b.keys()
        for k, v in b.items():
            assert (torch.equal(a[k], v) if torch.is_tensor(v) else a[k] == v), (task, k)


def test_shards_are_lhotse_shar(corpus):
    from lhotse import CutSet

    data, _ = corpus
    d = shard_dir(data) / "tts"
    cuts = CutSet.from_shar(fields={"cuts": sorted(map(str, d.glob("cuts.*.jsonl.gz"))),
                                    "input_ids": sorted(map(str, d.glob("input_ids.*.tar")))})
    shards, reader = ShardSet(shard_dir(data)), ShardReader()
    got = [(c.custom["task"], c.load_custom("input_ids")) for c in cuts]
    assert len(got) == 7 and all(t == "tts" for t, _ in got)
    for i, (_, ids) in enumerate(got):
        np.testing.assert_array_equal(ids, reader.read(shards, "tts", i)["input_ids"])


def test_killed_writer_resumes_without_duplicates_or_gaps(corpus, tmp_path, monkeypatch):
    data, _ = corpus
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("shards"))
    real, calls = ShardWriter.write_shard, []

    def dies_after_five(self, task, k, records):
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        calls.append((task, k))
        return real(self, task, k, records)

    monkeypatch.setattr(ShardWriter, "write_shard", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        write(copy)
    assert not (shard_dir(copy) / "index.json").exists()
    with pytest.raises(ShardError, match="index.json not found"):
        ShardSet(shard_dir(copy))
    from lhotse import CutSet

    time.sleep(1.1)     # the re-run of stage 5 rewrites the manifests: a new gzip timestamp
    manifest = copy / "tasks" / "toy_asr_train.jsonl.gz"
    CutSet.from_file(manifest).to_eager().to_file(manifest)
    monkeypatch.setattr(ShardWriter, "write_shard", lambda self, task, k, records: (
        calls.append((task, k)), real(self, task, k, records))[1])
    write(copy)
    assert len(calls) == 16 and len(set(calls)) == 16      # 8 tasks x 2 shards, each once
    a, b = ShardSet(shard_dir(data)), ShardSet(shard_dir(copy))
    assert a.index["tasks"] == b.index["tasks"] and a.arrays.keys() == b.arrays.keys()
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    for task in a.tasks:
        ids = [json.loads(line)["id"] for f in sorted((shard_dir(copy) / task).glob("cuts.*"))
               for line in __import__("gzip").open(f, "rt")]
        assert len(ids) == len(set(ids)) == 7


def test_changed_settings_need_force(corpus, tmp_path):
    data, _ = corpus
    with pytest.raises(ShardError, match="changed: .*shard_size"):
        write_shards.main(["--conf", str(DEBUG), "--data-root", str(data), "--sets", "toy:train",
                           "--shard-size", "5"])


def test_missing_truncated_and_foreign_shards_are_named(corpus, tmp_path):
    data, templates = corpus
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    tar = shard_dir(copy) / "asr" / "input_ids.000001.tar"
    tar.write_bytes(tar.read_bytes()[:700])
    with pytest.raises(ShardError, match="asr/input_ids.000001.tar has 700 bytes.*truncated"):
        ShardDataset(copy, ["toy:train"], templates, 1024, ACOUSTIC)
    reader = ShardReader()
    with pytest.raises(ShardError, match="input_ids.000001.tar.*(truncated|holds)"):
        reader.read(ShardSet(shard_dir(copy)), "asr", 5)
    tar.unlink()
    with pytest.raises(ShardError, match="input_ids.000001.tar is missing"):
        ShardDataset(copy, ["toy:train"], templates, 1024, ACOUSTIC)
    # rendered for another tokenizer / vocabulary: refused at start-up
    other = tmp_path / "other"
    shutil.copytree(data, other, ignore=shutil.ignore_patterns("shards"))
    write_shards.main(["--conf", str(DEBUG), "--set", "model.speech.num_tokens=40",
                       "--data-root", str(other), "--sets", "toy:train"])
    with pytest.raises(ShardError, match="another tokenizer"):
        ShardDataset(other, ["toy:train"], templates, 1024, ACOUSTIC)


def test_reader_keeps_a_bounded_number_of_files_open(corpus):
    data, _ = corpus
    shards, reader = ShardSet(shard_dir(data)), ShardReader(max_open=3)
    for task in shards.tasks:
        for i in range(7):
            assert reader.read(shards, task, i)["input_ids"].dtype == np.int32
            assert reader.open_files() <= 3 * 3
    r, w = os.pipe()
    if (pid := os.fork()) == 0:                     # a DataLoader worker: inherits nothing open
        os.write(w, bytes([reader.open_files()]))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"\0" and reader.open_files() > 0
    reader.close()
    assert reader.open_files() == 0


@pytest.mark.parametrize("mode,world", [("per_task", 1), ("mixed", 2)])
def test_sampler_state_dict_resumes_exactly(mode, world):
    rng = np.random.default_rng(0)
    lengths = {t: rng.integers(20, 500, n) for t, n in (("asr", 900), ("tts", 500), ("ser", 60))}
    groups = {t: np.arange(len(v)) // 100 for t, v in lengths.items()}
    cfg = SamplerConfig(weights={"asr": .2, "tts": .2, "ser": .1}, mode=mode, max_tokens=2000,
                        buffer_batches=4)
    make = lambda: TaskBatchSampler(lengths, cfg, rank=world - 1, world_size=world,  # noqa: E731
                                    groups=groups)
    s = make()
    s.set_epoch(3)
    full = list(s)
    assert len(full) > 20
    s.set_epoch(3)
    it = iter(s)
    for _ in range(13):        # 10 consumed, 3 more prefetched by a DataLoader
        next(it)
    state = json.loads(json.dumps(s.state_dict(10)))       # survives a JSON/torch round trip
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    assert list(resumed) == full[10:]
    assert all(len({t for t, _ in b}) == 1 for b in full) == (mode == "per_task")
    with pytest.raises(ValueError, match="other data or settings"):
        TaskBatchSampler({"asr": lengths["asr"]}, cfg, rank=0, world_size=world).load_state_dict(state)
