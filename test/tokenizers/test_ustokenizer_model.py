"""USTokenizer parts on a random tiny Whisper (real architecture): frontend lengths and
batching, encoder/decoder shapes, and the EMA VQ (k-means init, straight-through, dead-code
restart, DDP all-reduce)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from whisper.audio import log_mel_spectrogram, pad_or_trim

from dualspeech.pretrained import load_whisper
from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
from dualspeech.tokenizers.ustokenizer.frontend import WhisperFrontend, num_frames, num_tokens
from dualspeech.tokenizers.ustokenizer.model import USTokenizer
from dualspeech.tokenizers.ustokenizer.vq import EMAVectorQuantizer


@pytest.fixture(scope="module")
def whisper_model():
    return load_whisper("random:whisper-debug")


def frontend(whisper_model, pad_to_30s):
    return WhisperFrontend(whisper_model.encoder, whisper_model.dims.n_mels, pad_to_30s)


def speechlike(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * (120 + 80 * seed) * t) + 0.05 * torch.randn(n, generator=g)


def test_token_counts():
    assert num_frames(16000) == 50 and num_tokens(16000) == 25
    assert num_tokens(640) == 1 and num_tokens(960) == 2  # 3 frames -> 2 tokens
    assert num_tokens(16000 * 31) == 775


def test_trimmed_single_utterance_is_whisper_with_sliced_positions(whisper_model):
    wave = speechlike(16000 * 2 + 123, 0)
    feats, n = frontend(whisper_model, False)([wave])
    mel = log_mel_spectrogram(wave, 80)[None]
    enc = whisper_model.encoder
    full_pe = enc.positional_embedding
    try:
        enc.positional_embedding = full_pe[: (mel.shape[-1] + 1) // 2]
        ref = enc(mel)
    finally:
        enc.positional_embedding = full_pe
    assert n.tolist() == [num_frames(len(wave))]
    torch.testing.assert_close(feats[0, : n[0]], ref[0, : n[0]], atol=1e-5, rtol=1e-4)


def test_padded_mode_is_reference_30s_window(whisper_model):
    wave = speechlike(16000, 1)
    feats, n = frontend(whisper_model, True)([wave])
    ref = whisper_model.encoder(log_mel_spectrogram(pad_or_trim(wave), 80)[None])
    assert ref.shape[1] == 1500
    torch.testing.assert_close(feats[0, :50], ref[0, :50])


@pytest.mark.parametrize("pad", [False, True])
def test_batch_equals_one_by_one(whisper_model, pad):
    fe = frontend(whisper_model, pad)
    waves = [speechlike(n, i) for i, n in enumerate([8000, 20000, 3333])]
    batch, lens = fe(waves)
    for i, w in enumerate(waves):
        alone, n = fe([w])
        assert lens[i] == n[0] == num_frames(len(w))
        torch.testing.assert_close(batch[i, : lens[i]], alone[0, : n[0]], atol=1e-5, rtol=1e-4)
        assert torch.all(batch[i, lens[i]:] == 0)


def test_long_audio_is_split_into_30s_windows(whisper_model):
    fe = frontend(whisper_model, False)
    wave = speechlike(16000 * 31, 2)
    feats, n = fe([wave])
    assert n.item() == num_frames(len(wave)) == 1550
    head, _ = fe([wave[: 16000 * 30]])
    tail, _ = fe([wave[16000 * 30:]])
    torch.testing.assert_close(feats[0], torch.cat([head[0], tail[0]]))


def test_too_short_audio_is_an_error(whisper_model):
    with pytest.raises(ValueError, match="at least 640 samples"):
        frontend(whisper_model, False)([torch.zeros(600)])


@pytest.mark.parametrize("arch, extra", [("compact", 0), ("repcodec", -1)])
def test_tokenizer_shapes_and_batch_invariance(whisper_model, arch, extra):
    torch.manual_seed(0)
    cfg = USTokenizerConfig(whisper="random:whisper-debug", pad_to_30s=False, channels=32,
                            arch=arch, vq=VQConfig(codebook_size=16, dim=8, kmeans_init_batches=1))
    tok = USTokenizer(cfg, whisper_model)
    waves = [speechlike(n, i) for i, n in enumerate([16000, 9000, 30000])]
    tok.train()
    out = tok.encode(waves)  # first training batch: k-means init
    assert bool(tok.vq.initialized)
    assert out["h"].shape == (3, num_tokens(30000), 8)
    assert out["n25"].tolist() == [num_tokens(len(w)) for w in waves]
    rec = tok.decoder(out["z"], out["n25"])
    assert rec.shape[1] == 2 * out["z"].shape[1] + extra and rec.shape[2] == tok.frontend.width
    tok.eval()
    batched = tok.tokenize(waves)
    for w, ids in zip(waves, batched):
        assert torch.equal(tok.tokenize([w])[0], ids)
        assert ids.max() < 16 and len(ids) == num_tokens(len(w))
    with torch.no_grad():   # the reconstruction loss of a padded row = the row alone (50 frames)
        padded = {k: v[:1] for k, v in tok.encode(waves).items() if torch.is_tensor(v) and v.dim()}
        alone = tok.encode(waves[:1])
        torch.testing.assert_close(tok.reconstruction_loss(padded), tok.reconstruction_loss(alone))


def test_vq_kmeans_init_straight_through_and_commit():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(4, 2, kmeans_init_batches=2, kmeans_iters=10, dead_code_steps=0).train()
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])

    def data():
        return centers[torch.randint(0, 4, (64,))] + 0.1 * torch.randn(64, 2)

    z, _, stats = vq(data())
    assert not bool(vq.initialized) and stats["commit"] == 0  # pass-through before init
    vq(data())
    assert bool(vq.initialized)
    dists = torch.cdist(centers, vq.codebook).min(1).values
    assert dists.max() < 0.5, vq.codebook  # k-means found the 4 clusters
    h = data().requires_grad_(True)
    codebook = vq.codebook.clone()  # the EMA update after quantizing moves it
    z, ids, stats = vq(h)
    assert torch.allclose(z, codebook[ids], atol=1e-5)
    assert not torch.equal(codebook, vq.codebook)
    z.sum().backward()
    assert torch.equal(h.grad, torch.ones_like(h))  # straight-through
    assert 0 < stats["commit"] < 0.05 and stats["usage"] == 1.0
    assert 3.5 < stats["perplexity"] <= 4.0


def test_vq_dead_code_restart():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(3, 2, kmeans_init_batches=1, kmeans_iters=5, dead_code_steps=3).train()
    vq(torch.randn(32, 2))
    vq.codebook[2] = torch.tensor([100.0, 100.0])  # never nearest to anything
    vq.embed_sum[2] = vq.codebook[2]
    for _ in range(3):
        vq(torch.randn(32, 2))
    assert vq.codebook[2].abs().max() < 10, "the dead code was not moved onto the data"
    assert vq.unused_steps[2] == 0


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(8, 4, kmeans_init_batches=1, kmeans_iters=5, dead_code_steps=0).train()
    g = torch.Generator().manual_seed(100)
    batches = [torch.randn(2, 40, 4, generator=g) for _ in range(4)]  # [rank, n, dim] per step
    for b in batches:
        vq(b[rank] + rank)  # the ranks see different data
    torch.save({"codebook": vq.codebook, "cluster_size": vq.cluster_size}, f"{out}-{rank}.pt")
    dist.destroy_process_group()


def test_vq_ema_all_reduce_under_ddp(tmp_path):
    """Two gloo ranks on different data end with the same codebook, equal to one process
    seeing both ranks' vectors (statistics are all-reduced, not rank 0's broadcast)."""
    out = str(tmp_path / "vq")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    r0 = torch.load(f"{out}-0.pt", weights_only=True)
    r1 = torch.load(f"{out}-1.pt", weights_only=True)
    assert torch.equal(r0["codebook"], r1["codebook"])
    torch.manual_seed(0)
    single = EMAVectorQuantizer(8, 4, kmeans_init_batches=1, kmeans_iters=5, dead_code_steps=0).train()
    g = torch.Generator().manual_seed(100)
    for b in [torch.randn(2, 40, 4, generator=g) for _ in range(4)]:
        single(torch.cat([b[0], b[1] + 1]))
    torch.testing.assert_close(r0["codebook"], single.codebook, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r0["cluster_size"], single.cluster_size)
