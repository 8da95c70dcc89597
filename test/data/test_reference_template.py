"""The reference code's prompt layout, CoC spans and CoC draw (issue 22 items 6 and 7).

The reference (lavendery/UUG, ``DualSpeechLM/src/data/torchdata_sft_speech_latest.py`` and
``modeling_phi3.py``) is not copied: each test writes the reference's rule itself, as its data
pipeline states it, and checks the ids / masks our code builds against it.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from dualspeech.data.encoding import collate_encoded
from dualspeech.data.templates import IGNORE, TaskTemplates, TemplateConfig
from dualspeech.data.vocab import SpeechVocab, SpeechVocabConfig
from dualspeech.models import coc

K = 16
# the reference writes speech as text; the space before each audio token is taken to be part
# of that token (docs/model.md: its TTS decoding labels <audio> codes </audio> back to back)
AUDIO_RE = re.compile(r" ?(<audio>|</audio>|<a_\d+>)")


@pytest.fixture(scope="module")
def vocab():
    from dualspeech.pretrained import load_causal_lm

    _, tok = load_causal_lm("random:llama-debug")
    return SpeechVocab.extend(tok, SpeechVocabConfig(num_tokens=K))


@pytest.fixture(scope="module")
def tpl(vocab):
    return TaskTemplates(TemplateConfig(format="reference"), vocab)


def audio(codes) -> str:
    """The reference's speech text: '<audio> <a_1> <a_2> ... </audio>'."""
    return "<audio> " + " ".join(f"<a_{int(c)}>" for c in codes) + " </audio>"


def reference_encode(vocab, text: str) -> list[int]:
    """``tokenizer.encode(text, add_special_tokens=False)`` of the reference's extended
    tokenizer, mapped to our ids: text pieces by the backbone tokenizer, audio tokens as ids."""
    special = {"<audio>": vocab.begin_audio_id, "</audio>": vocab.end_audio_id}
    ids = []
    for i, piece in enumerate(AUDIO_RE.split(text)):
        if i % 2:
            ids.append(special.get(piece) or vocab.first_id + int(piece[3:-1]))
        elif piece:
            ids += vocab.tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


def reference_example(vocab, question: str, answer: str):
    """Its sequence and labels: [bos] + question + answer + [eos], labels on answer + eos."""
    q, a = reference_encode(vocab, question), reference_encode(vocab, answer)
    tok = vocab.tokenizer
    return ([tok.bos_token_id, *q, *a, tok.eos_token_id],
            [IGNORE] * (1 + len(q)) + a + [tok.eos_token_id], len(q), len(a))


SRC, QST, TGT = np.array([3, 0, 7]), np.array([5, 5]), np.array([1, 2, 15, 4])
FIELDS = {"text": "hello world", "emotion": "happy", "question": "who spoke?",
          "answer": "a man", "source_text": "hola", "target_text": "Guten Tag",
          "source_lang": "en", "target_lang": "de"}
U, A = "USER:", "ASSISTANT:"
# (task, speech roles given, reference question string, reference answer string)
CASES = [
    ("asr", {"primary": SRC}, "Recognize the speech and give me the transcription. "
     f"{U} {audio(SRC)}\n{A} ", "hello world"),
    ("s2tt", {"primary": SRC}, "Please translate the English speech into German text "
     f"transcription. {U} {audio(SRC)}\n{A} ", "Guten Tag"),
    ("ser", {"primary": SRC}, f"Please describe the emotion of the speaker. {U} {audio(SRC)}\n{A} ",
     "happy"),
    ("sqa", {"primary": SRC}, "Based on the content, provide a text-based answer to the "
     f"question. {U} The content is: {audio(SRC)}\nThe question is: who spoke?\n{A} ", "a man"),
    ("tts", {}, f"Please read this sentence out loud. {U} hello world\n{A} ", audio(TGT)),
    ("t2st", {}, f"Please translate the English text into German speech. {U} hola\n{A} ",
     audio(TGT)),
    ("vc", {"primary": SRC}, "Without altering the spoken content, transform the speaker's "
     f"voice in this speech to match the target voice. {U} {audio(SRC)}\n{A} ", audio(TGT)),
    ("sc", {"primary": SRC, "question": QST}, "Please listen to the speech content and provide "
     f"a spoken answer to the question. {U} The speech content is: {audio(SRC)}\n"
     f"The question is: {audio(QST)}\n{A} ", audio(TGT)),
]


@pytest.mark.parametrize("task,speech,question,answer", CASES, ids=[c[0] for c in CASES])
def test_reference_template_builds_the_reference_ids(vocab, tpl, task, speech, question, answer):
    ids, labels, _, _ = reference_example(vocab, question, answer)
    target = TGT if TASKS_GEN[task] else None
    enc = tpl.encode(task, FIELDS, speech, target)
    assert enc.input_ids == ids
    assert enc.labels == labels
    assert enc.input_ids[0] == vocab.tokenizer.bos_token_id            # bos, no chat template
    assert "<|im_start|>user" not in vocab.tokenizer.decode(enc.input_ids)
    lens = {role: len(codes) for role, codes in speech.items()}
    assert tpl.length(task, FIELDS, lens, len(TGT) if target is not None else 0) == len(ids)
    prompt = tpl.encode(task, FIELDS, speech, target, with_answer=False)
    # decoding feeds the question (+ <boa> for speech answers, which the reference samples)
    assert prompt.input_ids == ids[:enc.prompt_len] == ids[:1 + len(reference_encode(
        vocab, question)) + TASKS_GEN[task]]


TASKS_GEN = {"asr": False, "s2tt": False, "ser": False, "sqa": False,
             "tts": True, "t2st": True, "vc": True, "sc": True}


def test_reference_format_rejects_settings_it_would_ignore(vocab):
    from dualspeech.config import ConfigError, build

    for bad in ({"chat_template": True}, {"user_format": "Q: {prompt} A:"},
                {"prompts": {"asr": "{speech}"}}, {"system": "be brief"}):
        with pytest.raises((ValueError, ConfigError), match="format: reference"):
            build(TemplateConfig, {"format": "reference", **bad}, "templates")
    with pytest.raises((ValueError, ConfigError), match="ours"):
        build(TemplateConfig, {"format": "salmonn"}, "templates")


def _batch(vocab, tpl, cases):
    """A right-padded training batch of the given cases, as the dataset collates it."""
    enc = [tpl.encode(task, FIELDS, speech, TGT if TASKS_GEN[task] else None)
           for task, speech, _, _ in cases]
    return collate_encoded(enc, [c[0] for c in cases], 0)


def _reference_masks(vocab, cases, width):
    """Its attention_mask_question / _answer: TTS and VC: [1] * (1 + len(question_ids)) + [0] *
    (len(answer_ids) + 1) and the reverse; every other task: both = attention_mask."""
    qs, ans = [], []
    for task, _, question, answer in cases:
        ids, _, n_q, n_a = reference_example(vocab, question, answer)
        pad = [0] * (width - len(ids))
        if task in ("tts", "vc"):
            qs.append([1] * (1 + n_q) + [0] * (n_a + 1) + pad)
            ans.append([0] * (1 + n_q) + [1] * (n_a + 1) + pad)
        else:
            qs.append([1] * len(ids) + pad)
            ans.append([1] * len(ids) + pad)
    return torch.tensor(qs).bool(), torch.tensor(ans).bool()


def _spans(batch, spans: str):
    return coc.condition_spans(spans, batch["prompt_mask"], batch["target_mask"],
                               batch["attention_mask"])


def test_reference_spans_give_the_reference_condition_masks(vocab, tpl):
    """``model.coc_spans: reference`` + ``templates.format: reference``: the question / answer /
    all masks our training builds for each generation task equal the reference's."""
    cases = [c for c in CASES if TASKS_GEN[c[0]]]
    batch = _batch(vocab, tpl, cases)
    ref_q, ref_a = _reference_masks(vocab, cases, batch["input_ids"].shape[1])
    question, answer = _spans(batch, "reference")
    tasks = [c[0] for c in cases]
    for mode, ref in (("prompt", ref_q), ("target", ref_a), ("concat", ref_q | ref_a)):
        assert torch.equal(coc.training_mask(mode, question, answer, True, tasks), ref), mode
    # every CoC draw is one of the reference's three masks, row by row
    for seed in range(6):
        torch.manual_seed(seed)
        drawn = coc.training_mask("coc", question, answer, True, tasks)
        for row, q, a in zip(drawn, ref_q, ref_a):
            assert any(torch.equal(row, m) for m in (q, a, q | a))
    # the answer of a TTS example: <boa> codes <eoa> eos, at positions after the question
    n_q = len(reference_encode(vocab, CASES[4][2]))
    assert coc.gather_positions(answer[:1])[0, :1].tolist() == [1 + n_q + 1]
    row = batch["input_ids"][0][answer[0]].tolist()
    assert row == [vocab.begin_audio_id, *vocab.speech_ids(TGT).tolist(), vocab.end_audio_id,
                   vocab.tokenizer.eos_token_id]


def test_codes_spans_stay_as_before(vocab):
    """``coc_spans: codes`` (the mini default) keeps the prompt through <boa> and the codes;
    ``reference`` with our layout moves <boa> to the answer, which then ends at <eoa>."""
    ours = TaskTemplates(TemplateConfig(), vocab)
    cases = [c for c in CASES if c[0] in ("tts", "vc")]
    batch = _batch(vocab, ours, cases)
    prompt, target = _spans(batch, "codes")
    assert torch.equal(prompt, batch["prompt_mask"]) and torch.equal(target, batch["target_mask"])
    question, answer = _spans(batch, "reference")
    for i in range(len(cases)):
        n = int(batch["attention_mask"][i].sum())
        p = int(batch["prompt_mask"][i].sum())
        assert question[i].nonzero()[:, 0].tolist() == list(range(p - 1))
        assert answer[i].nonzero()[:, 0].tolist() == list(range(p - 1, n))
        assert batch["input_ids"][i, n - 1] == vocab.end_audio_id


def test_per_batch_draw_uses_the_reference_thresholds():
    """Its ``random.random()``: < 0.33 question, < 0.66 answer, else all; one per batch."""
    prompt = torch.tensor([[True, True, False, False]]).repeat(4, 1)
    target = ~prompt
    names = {}
    for seed in range(60):
        torch.manual_seed(seed)
        u = float(torch.rand(()))
        want = prompt if u < 0.33 else target if u < 0.66 else prompt | target
        torch.manual_seed(seed)
        got = coc.training_mask("coc", prompt, target, True, ["tts", "vc"] * 2, per_batch=True)
        assert torch.equal(got, want), (seed, u)
        names[u < 0.33, u < 0.66] = True
    assert len(names) == 3


def test_reference_format_needs_the_full_semantic_vocabulary(vocab):
    """<boa> and eos are labelled in its speech answers: a CE over speech ids only cannot
    score them, so that pairing stops at build time (stage 5 and training alike)."""
    from dualspeech.models.dualspeechlm import ModelConfig, model_input

    cfg = ModelConfig(speech=SpeechVocabConfig(num_tokens=K), semantic_vocab="speech")
    with pytest.raises(ValueError, match="semantic_vocab"):
        model_input(cfg, TemplateConfig(format="reference"), vocab)
    assert model_input(cfg, TemplateConfig(), vocab).vocab is vocab
