"""Streaming speech output: chunked codec decoding (``exact``: VQ-Mel's HiFi-GAN vocoded in
windows that hold its receptive field gives the one-shot samples, and less context does not;
``early``: windows while AcousticGPT generates, chunk sizes and total length of one-shot
decoding), ``DualSpeech.stream`` / ``tts_stream`` equal to ``tts``, the first chunk out before
AcousticGPT has ended, refusals. The server's ``?speech=stream`` is tested in test_serve.py."""
import dataclasses

import numpy as np
import pytest

from dualspeech.inference.config import StreamDecoding
from dualspeech.inference.requests import InvalidRequest
from dualspeech.inference.streaming import ChunkedDecoder
from dualspeech.testing.toy import toy_hifigan, toy_model_dir, toy_vqmel
from dualspeech.tokenizers.codecs import build_codec
from conftest import espeak_wave

EXACT_TOL = 1e-4      # of the peak: float rounding of convolutions of other lengths


@pytest.fixture(scope="module")
def vqmel(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqmel")     # a narrow HiFi-GAN of the published layout
    path = toy_vqmel(root / "vqmel.pt", 64, vocoder=str(toy_hifigan(root / "hifigan")))
    return build_codec({"name": "vqmel", "checkpoint": str(path)})


def decode_in_chunks(codec, cfg, ids):
    """Feed the ids one frame at a time, as AcousticGPT makes them; then finish."""
    dec, out = ChunkedDecoder(codec, cfg), []
    for n in range(1, len(ids) + 1):
        out += dec.push(ids[:n])
    return out + list(dec.finish(ids)), dec


def test_exact_chunks_are_the_one_shot_samples(vqmel, monkeypatch):
    ids = np.random.default_rng(0).integers(0, 64, 24)
    full = vqmel.decode([ids])[0]
    cfg = StreamDecoding(first=4, chunk=8)
    chunks, dec = decode_in_chunks(vqmel, cfg, ids)
    spf = 512                                   # 2 mel frames of 256 samples per code
    assert [len(c) for c in chunks] == [4 * spf, 8 * spf, 8 * spf, 4 * spf]
    assert dec.edges[-1] == len(full) == 24 * spf
    peak = np.abs(full).max()
    assert np.abs(np.concatenate(chunks) - full).max() < EXACT_TOL * peak
    # the window's context is what makes it exact: a quarter of the receptive field is not
    local = vqmel.local_synthesis()
    assert local.context == vqmel.vocoder.cfg.receptive_frames >= 8
    monkeypatch.setattr(vqmel, "local_synthesis",
                        lambda speaker=None: dataclasses.replace(local, context=local.context // 4))
    short, _ = decode_in_chunks(vqmel, cfg, ids)
    assert np.abs(np.concatenate(short) - full).max() > 100 * EXACT_TOL * peak


def test_early_chunks_go_out_while_frames_arrive(vqmel):
    ids = np.random.default_rng(1).integers(0, 64, 22)
    cfg = StreamDecoding(mode="early", first=4, chunk=6, left=4, right=2)
    dec, pushed = ChunkedDecoder(vqmel, cfg), {}
    for n in range(1, len(ids) + 1):
        for chunk in dec.push(ids[:n]):
            pushed.setdefault(n, []).append(len(chunk))
    # each chunk leaves once its lookahead exists: frames 4 + 2, then every 6 frames
    assert pushed == {6: [4 * 512], 12: [6 * 512], 18: [6 * 512]}
    rest = [len(c) for c in dec.finish(ids)]
    assert rest == [6 * 512] and dec.edges[-1] == len(vqmel.decode([ids])[0])


def test_stream_config_is_checked():
    with pytest.raises(ValueError, match="decode.stream.mode"):
        StreamDecoding(mode="soon")
    with pytest.raises(ValueError, match="chunk"):
        StreamDecoding(chunk=0)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from dualspeech import DualSpeech

    return DualSpeech.from_pretrained(
        toy_model_dir(tmp_path_factory.mktemp("toy")),
        decode={"acoustic": {"max_len": 40}, "stream": {"first": 4, "chunk": 8}})


def test_api_stream_concatenates_to_tts(ds):
    voice = espeak_wave("another voice speaks here", sr=16000, pitch=80)
    wave, sr = ds.tts("a red dog", voice, 16000)
    stream = ds.tts_stream("a red dog", voice, 16000)
    chunks = list(stream)
    assert stream.sample_rate == sr and len(chunks) == 1 + (len(wave) // (sr // 40) - 4 + 7) // 8
    assert np.array_equal(np.concatenate(chunks), wave)    # MelVQ: one decode, cut in chunks
    assert stream.result.status in ("ok", "acoustic_max_len", "no_eoa")
    assert stream.result.n_acoustic == len(wave) // (sr // 40)


def test_early_stream_starts_before_acoustic_gpt_ends(ds, monkeypatch):
    voice = espeak_wave("another voice speaks here", sr=16000, pitch=80)
    wave, _ = ds.tts("a red dog", voice, 16000)
    steps = []
    agpt = ds.model.acoustic_gpt
    real = agpt.steps

    def counted(*a, **kw):
        for ids in real(*a, **kw):
            steps.append(ids)
            yield ids
    monkeypatch.setattr(agpt, "steps", counted)
    monkeypatch.setattr(ds.cfg, "stream", StreamDecoding(mode="early", first=4, chunk=8,
                                                         left=8, right=4))
    stream = ds.tts_stream("a red dog", voice, 16000)
    first = next(stream)
    at_first = len(steps)
    rest = list(stream)
    assert at_first == 8 < len(steps) == stream.result.n_acoustic   # 4 frames + 4 lookahead
    assert len(first) + sum(map(len, rest)) == len(wave)


def test_stream_refuses_text_tasks_and_bad_requests(ds):
    speech = espeak_wave("the cat sat on the mat", sr=16000)
    with pytest.raises(InvalidRequest, match="answers with text"):
        ds.stream({"task": "asr", "audio": (speech, 16000)})
    with pytest.raises(InvalidRequest, match="needs 'prompt'"):
        ds.stream({"task": "tts", "text": "hi"})
