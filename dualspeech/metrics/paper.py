"""The paper's reported numbers (PAPER.md section 4), for side-by-side result tables.

``PAPER[system][test_key][metric]``. Test keys name the paper's test sets; a recipe's score
config maps its own test-set names onto them (``paper_refs``). Metric names are ours
(``wer`` %, ``bleu``, ``accuracy`` %, ``judge`` 1-100, ``sim`` cosine, ``dnsmos``). The paper
reports one DNSMOS without naming it; its ground truth (3.86 on LibriTTS test-clean, 3.62 on
VCTK) is in the range of DNSMOS P.808 for clean read speech, not of OVRL (about 3.3), so its
number stands beside our P.808 only (``METRIC_ALIASES``; docs/metrics.md says why).
"""
from __future__ import annotations

TEST_KEYS = {
    "asr_test_clean": "LibriSpeech test-clean (ASR)",
    "asr_test_other": "LibriSpeech test-other (ASR)",
    "s2tt_en_de": "CoVoST2 en-de test (S2TT)",
    "ser_session5": "IEMOCAP session 5 (SER)",
    "sqa": "SQA 400 held-out pairs",
    "tts_test_clean": "LibriTTS-R test-clean (TTS)",
    "tts_test_other": "LibriTTS-R test-other (TTS)",
    "vc_vctk": "VCTK 400 pairs (VC)",
    "t2st_es_en": "CVSS-C es-en test (T2ST)",
    "t2st_fr_en": "CVSS-C fr-en test (T2ST)",
    "sc": "SC 400 pairs",
}


def _gen(sim: float, wer: float, dnsmos: float) -> dict[str, float]:
    return {"sim": sim, "wer": wer, "dnsmos": dnsmos}


PAPER: dict[str, dict[str, dict[str, float]]] = {
    "DualSpeechLM-USToken": {
        "asr_test_clean": {"wer": 4.22}, "asr_test_other": {"wer": 9.71},
        "s2tt_en_de": {"bleu": 19.74}, "ser_session5": {"accuracy": 60.92},
        "sqa": {"bleu": 44.38, "judge": 88},
        "tts_test_clean": _gen(0.90, 9.25, 3.86), "tts_test_other": _gen(0.88, 9.88, 3.82),
        "vc_vctk": _gen(0.80, 10.16, 3.46),
        "t2st_es_en": {"bleu": 26.77}, "t2st_fr_en": {"bleu": 23.82},
        "sc": {"bleu": 16.24, "judge": 67},
    },
    "DualSpeechLM-HuBERT": {
        "asr_test_clean": {"wer": 5.56}, "asr_test_other": {"wer": 14.62},
        "s2tt_en_de": {"bleu": 10.20}, "ser_session5": {"accuracy": 51.77},
        "sqa": {"bleu": 42.59, "judge": 85},
    },
    "Baseline-Acoustic": {
        "asr_test_clean": {"wer": 36.52}, "asr_test_other": {"wer": 80.06},
        "s2tt_en_de": {"bleu": 1.91}, "ser_session5": {"accuracy": 54.90},
        "sqa": {"bleu": 17.68, "judge": 76},
    },
    "Baseline-Semantic": {
        "asr_test_clean": {"wer": 5.70}, "asr_test_other": {"wer": 14.32},
        "s2tt_en_de": {"bleu": 11.13}, "ser_session5": {"accuracy": 51.91},
        "sqa": {"bleu": 42.01, "judge": 85},
    },
    "Ground truth": {
        "tts_test_clean": _gen(1.0, 3.94, 3.86), "tts_test_other": _gen(1.0, 5.35, 3.78),
        "vc_vctk": _gen(1.0, 2.64, 3.62),
    },
    "DualSpeechLM-USToken (Vicuna-7B)": {
        "asr_test_clean": {"wer": 4.15}, "asr_test_other": {"wer": 9.69},
        "s2tt_en_de": {"bleu": 20.46}, "ser_session5": {"accuracy": 58.42},
        "sqa": {"bleu": 44.60}, "tts_test_clean": _gen(0.89, 12.63, 3.90),
    },
}

METRIC_ALIASES = {"dnsmos_p808": "dnsmos"}   # the paper's DNSMOS is P.808 (not OVRL)


def paper_value(system: str, test_key: str | None, metric: str) -> float | None:
    """The paper's number for our ``metric`` on ``test_key``, or None if it reports none."""
    if system not in PAPER:
        raise KeyError(f"unknown paper system {system!r}; known: {sorted(PAPER)}")
    if test_key is None:
        return None
    if test_key not in TEST_KEYS:
        raise KeyError(f"unknown paper test set {test_key!r}; known: {sorted(TEST_KEYS)}")
    row = PAPER[system].get(test_key, {})
    return row.get(metric, row.get(METRIC_ALIASES.get(metric, metric)))
