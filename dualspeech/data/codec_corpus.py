"""The offline codec corpus: every installed voice except the mini corpus's three test voices,
reading mini-grammar sentences, for training the shipped codec (``egs/codec``).

A codec learns the sounds of the voices it hears; the mini corpus's 9 training voices are few.
This corpus takes every offline engine voice that ``tools/install.sh`` installs (festival,
flite, pico, espeak-ng variants; piper's only voice, flite awb and pico en-US are the mini test
voices and stay out, so ``bench codec_resynthesis`` measures voices the codec never heard),
sox pitch shifts of them, and the mini corpus's four speaking styles (emotions) in rotation.
The sentences of every mini test split (seed 0) are left out too. One part (``train``) of speech
cuts, at the vocoder's 22.05 kHz.

Same arguments -> byte-identical audio and manifests; a finished run is stamped (voices and
engine versions included) and re-running it is a no-op; an interrupted run resumes from its wavs.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, replace
from pathlib import Path

from lhotse import Recording

from dualspeech.data.manifest_io import PartData, speech_cut, write_part
from dualspeech.data.mini import EMOTION_EFFECTS, SIZES, SPEAKERS, TEST_SPEAKERS, plan_corpus
from dualspeech.data.mini_grammar import sample_sentences
from dualspeech.data.synth import Effects, EngineSet, SynthJob, Voice, claim_audio_dir, synthesize_all
from dualspeech.utils.stamp import Stamp

log = logging.getLogger(__name__)

CORPUS = "codec"
VERSION = 1  # bump when the generator's output changes for the same arguments
SAMPLE_RATE = 22050  # the HiFi-GAN vocoder's rate: no resampling before the codec's mel analysis
LEVEL = Effects(level_db=-6.0)


def _voice(engine: str, name: str, pitch_cents: int = 0) -> Voice:
    return Voice(name, engine=engine, effects=LEVEL + Effects(pitch_cents=pitch_cents))


def _espeak(variant: str, pitch: int) -> Voice:
    return Voice(variant, pitch=pitch, rate=150, engine="espeak", effects=LEVEL)


# voice id -> voice: the engine voices and pitch shifts of them, then espeak-ng variants
VOICES: dict[str, Voice] = {
    "slt": _voice("festival", "cmu_us_slt_arctic_hts"),
    "slt_lo": _voice("festival", "cmu_us_slt_arctic_hts", -300),
    "slt_hi": _voice("festival", "cmu_us_slt_arctic_hts", 200),
    "kal": _voice("festival", "kal_diphone"),
    "kal_hi": _voice("festival", "kal_diphone", 300),
    "ked": _voice("festival", "ked_diphone"),
    "ked_lo": _voice("festival", "ked_diphone", -250),
    "flite_kal": _voice("flite", "kal"),
    "flite_kal16": _voice("flite", "kal16"),
    "flite_rms": _voice("flite", "rms"),
    "flite_rms_hi": _voice("flite", "rms", 250),
    "flite_slt": _voice("flite", "slt"),
    "flite_slt_lo": _voice("flite", "slt", -200),
    "pico_gb": _voice("pico", "en-GB"),
    "pico_gb_lo": _voice("pico", "en-GB", -300),
    "pico_gb_hi": _voice("pico", "en-GB", 200),
    "espeak_m1": _espeak("en-us+m1", 45),
    "espeak_m3": _espeak("en-us+m3", 40),
    "espeak_m7": _espeak("en+m7", 50),
    "espeak_f2": _espeak("en-us+f2", 55),
    "espeak_f4": _espeak("en+f4", 60),
}
HELD_OUT = {(SPEAKERS[s][0].engine, SPEAKERS[s][0].name) for s in TEST_SPEAKERS}


def held_out_texts(seed: int = 0) -> set[str]:
    """What every size's mini test split says: the codec never reads it."""
    return {u.text for size in SIZES for u in plan_corpus(size, seed)["test"].utts}


def plan(utts_per_voice: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(utterance id, text, voice id, emotion) for every utterance, seeded."""
    rng, avoid = random.Random(seed), held_out_texts()
    emotions = sorted(EMOTION_EFFECTS)
    out = []
    for vid in VOICES:
        texts = [s.text("en") for s in sample_sentences(utts_per_voice + len(avoid), rng)]
        for i, text in enumerate([t for t in texts if t not in avoid][:utts_per_voice]):
            out.append((f"{vid}_{i:04d}", text, vid, emotions[i % len(emotions)]))
    return out


def make_codec_corpus(out_dir: str | Path, utts_per_voice: int = 120, seed: int = 0, nj: int = 2,
                      force: bool = False) -> int:
    """Generate (or confirm up to date) the codec corpus; returns its number of utterances."""
    clash = HELD_OUT & {(v.engine, v.name) for v in VOICES.values()}
    if clash:
        raise ValueError(f"codec corpus: {sorted(clash)} are mini test voices; they must stay unseen")
    out = Path(out_dir).resolve()
    utts = plan(utts_per_voice, seed)
    engine = EngineSet(list(VOICES.values()), SAMPLE_RATE)   # fails if one is missing
    params = {"corpus": CORPUS, "version": VERSION, "utts_per_voice": utts_per_voice,
              "seed": seed, "sample_rate": SAMPLE_RATE, "tts": engine.describe(),
              "out_dir": str(out), "voices": {k: asdict(v) for k, v in VOICES.items()},
              "emotions": {e: asdict(fx) for e, fx in EMOTION_EFFECTS.items()}}
    stamp = Stamp(out / f".{CORPUS}_stamp.json", params)
    if stamp.done(force):
        log.info("codec corpus in %s is up to date; nothing to do", out)
        return len(utts)
    audio = out / "audio" / "train"
    for damaged in stamp.damaged():
        if damaged.suffix == ".wav" and damaged.is_file():
            log.warning("%s changed since it was written; synthesising it again", damaged)
            damaged.unlink()
    claim_audio_dir(out / "audio", stamp.digest, force)
    jobs = [SynthJob(str(audio / f"{uid}.wav"), text,
                     replace(VOICES[vid], effects=VOICES[vid].effects + EMOTION_EFFECTS[emo]))
            for uid, text, vid, emo in utts]
    synthesize_all(engine, jobs, nj=nj, desc="codec corpus")
    data = PartData()
    for uid, text, vid, emo in utts:
        data.add_cut(speech_cut(Recording.from_file(audio / f"{uid}.wav", recording_id=uid),
                                text, vid, custom={"emotion": emo}))
    stamp.write([j.wav for j in jobs] + write_part(out, CORPUS, "train", data))
    log.info("codec corpus written to %s: %d utterances of %d voices", out, len(utts), len(VOICES))
    return len(utts)
