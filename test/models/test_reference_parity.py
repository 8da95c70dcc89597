"""What the paper configs compute against the reference code's computation (issue 22).

The reference (lavendery/UUG) is not copied here: each test states the reference's rule in
words and builds the expected value from our own modules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from lhotse import CutSet, Recording
from transformers import AutoTokenizer

from dualspeech.config import build, load_yaml
from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
from dualspeech.data.manifest_io import speech_cut, task_example
from dualspeech.models import coc
from dualspeech.pretrained import resolve
from dualspeech.testing.toy import toy_data, toy_model
from dualspeech.tokenizers.ustokenizer import config as tok_config
from dualspeech.tokenizers.ustokenizer.config import PromptConfig, USTokenizerConfig
from dualspeech.tokenizers.ustokenizer.data import UnderstandingDataset
from dualspeech.tokenizers.ustokenizer.modules import build_codec
from dualspeech.tokenizers.ustokenizer.prompts import PromptBuilder

DEBUG = Path(__file__).resolve().parents[2] / "egs/mini/conf/dualspeechlm_debug.yaml"


def test_target_condition_positions_continue_after_the_prompt():
    prompt = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]).bool()
    target = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0]]).bool()
    # speaker frame = 0, the hidden state at sequence index t sits at t + 1; padding 0
    assert coc.gather_positions(target).tolist() == [[4, 5, 0], [3, 4, 5]]
    assert coc.gather_positions(prompt).tolist() == [[1, 2, 3], [1, 2, 0]]
    assert coc.gather_positions(prompt | target).tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]


def test_inference_positions_follow_the_same_rule():
    p = [torch.ones(3, 2), torch.ones(2, 2)]
    t = [torch.full((2, 2), 2.0), torch.full((1, 2), 2.0)]
    rows, valid, pos = coc.inference_condition("target", p, t, ["tts", "sc"])
    assert pos.tolist() == [[4, 5, 0], [1, 2, 3]]        # SC: always the concatenation
    assert rows[0, :2, 0].tolist() == [2.0, 2.0] and valid.sum(1).tolist() == [2, 3]
    _, _, pos = coc.inference_condition("prompt", p, t, ["vc", "tts"])
    assert pos.tolist() == [[1, 2, 3], [1, 2, 0]]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model, cfg = toy_model(DEBUG, ["model.lora.rank=0", "model.condition=target"])
    root = toy_data(tmp_path_factory.mktemp("ref") / "data", cfg, n_per_task=3)
    return model, cfg, load_examples(root, ["toy:test"])


def _batch(model, cfg, examples, tasks):
    chosen = {t: examples[t] for t in tasks}
    ds = TaskDataset(chosen, model.templates, build(DataConfig, cfg["data"], "data"),
                     model.acoustic_spec())
    return ds.collate([ex for t in tasks for ex in chosen[t]])


@pytest.fixture(scope="module")
def tts_batch(toy):
    model, cfg, examples = toy
    return model, _batch(model, cfg, examples, ["tts"])


def _reference_acoustic_ce(model, batch, cond_mask, idx=None, tokens=None, spk=None):
    """The reference's AcousticGPT loss: the adapter over EVERY LLM hidden state, the speaker
    frame in front, condition positions 0..T over that whole sequence, and the frames outside
    the condition mask left out of attention only."""
    gpt = model.acoustic_gpt
    h, _ = model.hidden(batch["input_ids"], batch["attention_mask"])
    idx = batch["acoustic_index"] if idx is None else idx
    h, cond_mask = h[idx], cond_mask[idx]
    B, T = cond_mask.shape
    spk = batch["speaker_embedding"] if spk is None else spk
    prefix = torch.cat([gpt.spk_proj(spk).unsqueeze(1), gpt.adapter(h)], 1)
    prefix = prefix + gpt.cpe(torch.arange(T + 1))[None]
    if tokens is None:
        tokens, tmask = batch["acoustic_tokens"], batch["acoustic_mask"].bool()
    else:
        tmask = torch.ones_like(tokens, dtype=torch.bool)
    x = torch.cat([prefix, gpt._tokens(tokens, (tmask.long().cumsum(1) - 1).clamp(min=0))], 1)
    valid = torch.cat([torch.ones(B, 1, dtype=torch.bool), cond_mask, tmask], 1)
    is_prefix = torch.zeros_like(valid)
    is_prefix[:, :T + 1] = True
    out, _ = gpt._run(x, gpt._full_mask(valid, is_prefix))
    logits = gpt._logits(out[:, T + 1:])
    target = tokens[:, 1:].masked_fill(~tmask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=-100)


def test_target_only_condition_matches_the_full_sequence_computation(tts_batch):
    """Chain-of-Condition's answer-only condition: the reference masks the question out of a
    condition that keeps every position, so the answer frames keep positions that continue
    after the question (they used to restart at 1)."""
    model, batch = tts_batch
    with torch.no_grad():
        ours = model(batch)["acoustic_ce"]
        ref = _reference_acoustic_ce(model, batch, batch["target_mask"])
        concat = _reference_acoustic_ce(model, batch, batch["target_mask"] | batch["prompt_mask"])
    assert abs(float(ours) - float(ref)) < 1e-5, (float(ours), float(ref))
    assert abs(float(ours) - float(concat)) > 1e-4      # the masks do differ


def test_understanding_examples_train_acoustic_gpt_on_no_speech(toy):
    """``model.acoustic_understanding`` (paper configs): an ASR example's AcousticGPT target is
    [start, no-speech, end] with a zero speaker vector, conditioned on its whole sequence."""
    model, cfg, examples = toy
    batch = _batch(model, cfg, examples, ["asr"])
    with torch.no_grad():
        assert float(model(batch)["has_acoustic"]) == 0.0      # today's default: no target
        model.cfg.acoustic_understanding = True
        try:
            out = model(batch)
        finally:
            model.cfg.acoustic_understanding = False
        lay = model.acoustic_gpt.layout
        n = len(batch["tasks"])
        ref = _reference_acoustic_ce(
            model, batch, batch["attention_mask"].bool(), idx=torch.arange(n),
            tokens=torch.tensor([[lay.start_id, lay.no_speech_id, lay.end_id]] * n),
            spk=torch.zeros(n, model.acoustic_gpt.cfg.spk_dim))
    assert float(out["has_acoustic"]) == 1.0
    assert abs(float(out["acoustic_ce"]) - float(ref)) < 1e-5


def test_mixed_batch_joins_generation_and_understanding_rows(toy):
    model, cfg, examples = toy
    batch = _batch(model, cfg, examples, ["tts", "asr"])
    model.cfg.acoustic_understanding = True
    try:
        idx, mask, tokens, tmask, spk = model._acoustic_rows(batch, torch.device("cpu"))
    finally:
        model.cfg.acoustic_understanding = False
    n_tts = len(examples["tts"])
    assert sorted(idx.tolist()) == list(range(len(batch["tasks"])))
    assert tokens.shape[0] == mask.shape[0] == spk.shape[0] == len(idx)
    assert tmask[n_tts:].sum(1).tolist() == [3] * (len(idx) - n_tts)
    assert (tokens[n_tts:, 3:] == model.acoustic_gpt.pad_id).all()
    assert spk[n_tts:].abs().sum() == 0 and spk[:n_tts].abs().sum() > 0


@pytest.fixture(scope="module")
def ref_toy(toy):
    """The toy model with the reference's prompt layout and CoC spans (the paper configs')."""
    _, _, examples = toy
    model, cfg = toy_model(DEBUG, ["model.lora.rank=0", "model.condition=target",
                                   "+model.coc_spans=reference", "+templates.format=reference"])
    return model, cfg, examples


def test_reference_answer_condition_matches_the_full_sequence_computation(ref_toy):
    """``coc_spans: reference``: its answer mask is every position from the first labelled
    one (``<audio>``) to the end (codes, ``</audio>``, eos); its question mask the rest
    (bos + prompt). Both, through our training path, give the reference's acoustic CE."""
    model, cfg, examples = ref_toy
    batch = _batch(model, cfg, examples, ["tts", "vc"])
    labelled = (batch["labels"] != -100).long().cummax(1).values.bool()
    answer = labelled & batch["attention_mask"].bool()
    question = batch["attention_mask"].bool() & ~answer
    assert (batch["input_ids"][answer.long().argmax(1).unsqueeze(1).squeeze(1) * 0 +
            torch.arange(len(answer)), answer.long().argmax(1)] ==
            model.vocab.begin_audio_id).all()
    with torch.no_grad():
        for mode, mask in (("target", answer), ("prompt", question)):
            model.cfg.condition = mode
            ours = model(batch)["acoustic_ce"]
            ref = _reference_acoustic_ce(model, batch, mask)
            assert abs(float(ours) - float(ref)) < 1e-5, (mode, float(ours), float(ref))
        model.cfg.condition = "target"


def _check_inference_condition(model, batch, seed: int) -> list[bool]:
    """Decode ``batch`` and compare each condition with the LLM re-run over its whole sequence;
    returns which prompts ended with end-of-audio."""
    from dualspeech.inference.lm_generation import generate_speech_tokens

    out = generate_speech_tokens(model, batch, max_new_tokens=24, do_sample=True,
                                 generator=torch.Generator().manual_seed(seed))
    ended = []
    for i in range(len(out.tokens)):
        prompt = batch["input_ids"][i][batch["attention_mask"][i].bool()]
        gen = model.vocab.speech_ids(out.tokens[i]).tolist()
        ended.append(len(out.token_hidden[i]) > len(gen))
        seq = torch.tensor([*prompt.tolist(), *gen, *([model.vocab.end_audio_id] * ended[-1])])
        full, _ = model.hidden(seq[None], torch.ones(1, len(seq), dtype=torch.long))
        one = out.select([i])
        for mode, start in (("concat", 0), ("target", len(prompt) - 1)):
            rows, valid, pos = coc.inference_condition(mode, one.prompt_hidden, one.token_hidden,
                                                       one.tasks, "reference")
            assert torch.allclose(rows[0][valid[0]], full[0, start:], atol=1e-4), mode
            assert pos[0].tolist() == list(range(start + 1, len(seq) + 1))
    return ended


def test_reference_inference_condition_is_the_generated_sequence(ref_toy):
    """At inference the reference re-runs the LLM over prompt + generated ``<audio>`` codes
    ``</audio>`` and conditions AcousticGPT on all of it (answer-only: from ``<audio>``
    on); ours gives the same rows and positions from the KV-cached decoding."""
    model, cfg, examples = ref_toy
    ds = TaskDataset({"tts": examples["tts"]}, model.templates,
                     build(DataConfig, cfg["data"], "data"), model.acoustic_spec())
    eoa = model._speech_head()[-1]
    kept = eoa.detach().clone()
    try:
        with torch.no_grad():
            eoa.zero_()          # seed 0 then ends two prompts early and cuts one at 24 tokens
            ended = _check_inference_condition(model, ds.collate_prompts(examples["tts"][:3]), 0)
            assert 1 <= sum(ended) < len(ended)
            # one prompt alone: its end of audio is the last step (its state is fed after it)
            alone = [_check_inference_condition(model, ds.collate_prompts(examples["tts"][:1]),
                                                seed)[0] for seed in range(4)]
            assert any(alone)
    finally:
        with torch.no_grad():
            eoa.copy_(kept)


def test_per_batch_coc_draw_gives_every_row_the_same_choice():
    torch.manual_seed(0)
    prompt = torch.tensor([[True, True, False, False]]).repeat(8, 1)
    target = torch.tensor([[False, False, True, True]]).repeat(8, 1)
    seen = set()
    for _ in range(30):
        m = coc.training_mask("coc", prompt, target, True, ["tts", "vc"] * 4, per_batch=True)
        assert len({tuple(r.tolist()) for r in m}) == 1
        seen.add(tuple(m[0].tolist()))
    assert len(seen) == 3


def _gpt(**kw):
    from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig

    torch.manual_seed(0)
    return AcousticGPT(AcousticGPTConfig(n_codes=20, n_layer=1, n_embd=16, n_head=2,
                                         block_size=50, cond_block_size=50, spk_dim=5,
                                         cond_dim=8, **kw)).eval()


def test_tanh_gelu_is_the_reference_formula():
    x = torch.linspace(-4, 4, 101)
    ref = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3)))
    act = _gpt(gelu="tanh").blocks[0].mlp[1]
    assert torch.allclose(act(x), ref, atol=1e-6)
    assert not torch.allclose(_gpt().blocks[0].mlp[1](x), ref, atol=1e-5)


def test_speaker_bias_and_untied_head():
    assert _gpt(spk_bias=False).spk_proj.bias is None and _gpt().spk_proj.bias is not None
    gpt = _gpt(head="untied")
    assert torch.equal(gpt.head, gpt.wte.weight) and gpt.head is not gpt.wte.weight
    cond, spk = torch.randn(2, 4, 8), torch.randn(2, 5)
    tokens, tmask = gpt.make_tokens([torch.tensor([1, 2, 3]), torch.tensor([4])])
    _, before = gpt(cond, torch.ones(2, 4, dtype=torch.bool), spk, tokens, tmask)
    with torch.no_grad():
        gpt.head.mul_(2.0)                     # the logits come from the untied head
    _, after = gpt(cond, torch.ones(2, 4, dtype=torch.bool), spk, tokens, tmask)
    assert torch.allclose(after, 2 * before, atol=1e-5)
    with pytest.raises(ValueError, match="gelu"):
        _gpt(gelu="fast")


def test_reference_weight_decay_groups_exempt_biases_only():
    from dualspeech.training.trainer import param_groups

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    ours = param_groups(net, 0.1)
    ref = param_groups(net, 0.1, "bias")
    assert [len(g["params"]) for g in ours] == [1, 3]      # weight | bias, ln weight, ln bias
    assert [len(g["params"]) for g in ref] == [2, 2]       # weight, ln weight | both biases
    with pytest.raises(ValueError, match="no_decay"):
        param_groups(net, 0.1, "norms")


def test_all_reference_options_train_and_export(toy, tmp_path):
    """The paper configs' AcousticGPT / CoC options together: a training step on a mixed batch
    reaches the untied head, and export + load keeps them."""
    from dualspeech.models.io import export_model, load_model

    _, cfg, examples = toy
    model, cfg = toy_model(DEBUG, [
        "model.lora.rank=0", "+model.coc_draw=batch", "+model.acoustic_understanding=true",
        "+model.acoustic_gpt.gelu=tanh", "+model.acoustic_gpt.spk_bias=false",
        "+model.acoustic_gpt.head=untied", "+model.coc_spans=reference",
        "+templates.format=reference"])
    model.train()
    out = model(_batch(model, cfg, examples, ["tts", "asr", "vc"]))
    out["loss"].backward()
    assert model.acoustic_gpt.head.grad.abs().sum() > 0 and torch.isfinite(out["loss"])
    loaded = load_model(export_model(model.eval(), tmp_path / "m"))
    assert torch.equal(loaded.acoustic_gpt.head, model.acoustic_gpt.head)
    assert loaded.acoustic_gpt.spk_proj.bias is None and loaded.cfg.acoustic_understanding
    assert loaded.templates.reference and loaded.cfg.coc_spans == "reference"


def test_whole_text_embedding_trains_exports_and_merges(toy, tmp_path):
    """``model.train_text_rows`` (paper configs): the reference trains the whole embed_tokens
    and lm_head (peft modules_to_save). They get gradients, and export, load and merge keep
    the trained rows; off (mini / debug) they stay frozen."""
    from dualspeech.bin.merge import merge
    from dualspeech.models.io import export_model, load_model

    _, cfg, examples = toy
    frozen, _ = toy_model(DEBUG)
    assert not frozen.backbone.get_input_embeddings().weight.requires_grad
    model, cfg = toy_model(DEBUG, ["+model.train_text_rows=true"])   # LoRA on
    emb = model.backbone.get_input_embeddings().weight
    head = model.backbone.get_output_embeddings().weight
    assert emb.requires_grad and head.requires_grad
    model.train()
    batch = _batch(model, cfg, examples, ["asr", "tts"])
    model(batch)["loss"].backward()
    used = batch["input_ids"][batch["input_ids"] < model.vocab.text_vocab_size].unique()
    assert emb.grad[used].abs().sum() > 0 and head.grad.abs().sum() > 0
    with torch.no_grad():
        emb[used[:3]] += 0.5                   # a training step's change to text rows
    exported = export_model(model.eval(), tmp_path / "m")
    loaded = load_model(exported)
    assert torch.equal(loaded.backbone.get_input_embeddings().weight[used], emb[used])
    merged = load_model(merge(exported, tmp_path / "merged"))
    assert not merged.cfg.train_text_rows
    assert torch.allclose(merged.backbone.get_input_embeddings().weight[used], emb[used])



def _conv(x, p, bias, stride=1):
    w = next(p)
    return F.conv1d(x, w, next(p) if bias else None, stride=stride, padding=w.shape[-1] // 2)


def _unit(x, p):
    return x + _conv(F.elu(_conv(F.elu(x), p, False)), p, False)


def _reference_encoder(params, feats):
    """The reference's RepCodec encoder written out from its rules (modules3/, USTokenizer.py):
    conv k3 padding 1; a unit is x + conv1x1(ELU(conv k3(ELU(x)))), no biases; down conv k3 s2
    (bias), conv (no bias), 2 x [unit, unit, conv (bias)], projection conv (no bias).
    Weights are consumed in that order. [B, T, W] -> [B, ceil(T / 2), D]."""
    p = iter(params)
    x = _conv(_conv(feats.transpose(1, 2), p, True, stride=2), p, False)
    for _ in range(2):
        x = _conv(_unit(_unit(x, p), p), p, True)
    z = _conv(x, p, False)
    assert next(p, None) is None                       # no parameter the reference lacks
    return z.transpose(1, 2)


def _reference_decoder(params, z):
    """Its decoder: conv (no bias), 2 x [conv (bias), unit, unit], conv (no bias), transposed
    conv k3 s2 p1 output_padding 0 (bias). [B, T, D] -> [B, 2T - 1, W]."""
    p = iter(params)
    y = _conv(z.transpose(1, 2), p, False)
    for _ in range(2):
        y = _unit(_unit(_conv(y, p, True), p), p)
    y = _conv(y, p, False)
    y = F.conv_transpose1d(y, next(p), next(p), stride=2, padding=1)
    assert next(p, None) is None
    return y.transpose(1, 2)


def test_repcodec_matches_the_reference_formulas_and_size():
    """``ustokenizer.arch: repcodec``: the reference's encoder / decoder computation, T50
    Whisper frames -> ceil(T50 / 2) codes -> 2T - 1 frames; the reference's parameter count
    (31 C^2 + 3 C per side: ~32.5 M at 1024 channels); a padded batch row equals the row alone."""
    torch.manual_seed(0)
    enc, dec = build_codec("repcodec", 12, 16, 8, [1, 3])
    feats, lengths = torch.randn(2, 10, 12), torch.tensor([10, 6])
    with torch.no_grad():
        z, n25 = enc(feats, lengths)
        rec = dec(z, n25)
        ref_z = _reference_encoder(enc.parameters(), feats[:1])
        ref_rec = _reference_decoder(dec.parameters(), ref_z)
        alone, _ = enc(feats[1:, :6], lengths[1:])
    assert z.shape == (2, 5, 8) and n25.tolist() == [5, 3] and rec.shape == (2, 9, 12)
    torch.testing.assert_close(z[:1], ref_z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec[:1], ref_rec, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, z[1:, :3], atol=1e-6, rtol=1e-6)
    assert dec.frames(n25).tolist() == [9, 5]
    with torch.device("meta"):
        sides = build_codec("repcodec", 1024, 1024, 1024, [1, 3])
    C = 1024
    assert [sum(p.numel() for p in m.parameters()) for m in sides] == [31 * C * C + 3 * C] * 2


@pytest.mark.parametrize("conf, arch", [("multitask/conf/ustokenizer_paper.yaml", "repcodec"),
                                        ("mini/conf/ustokenizer_mini.yaml", "compact"),
                                        ("mini/conf/ustokenizer_debug.yaml", "compact")])
def test_configs_select_the_tokenizer_arch(conf, arch):
    cfg = load_yaml(Path(__file__).resolve().parents[2] / "egs" / conf)["ustokenizer"]
    assert build(USTokenizerConfig, cfg, "ustokenizer").arch == arch


PAPER_TOK = Path(__file__).resolve().parents[2] / "egs/multitask/conf/ustokenizer_paper.yaml"


@pytest.fixture(scope="module")
def text_tokenizer():
    return AutoTokenizer.from_pretrained(resolve("random:llama-debug"), local_files_only=True)


def _prompt_builder(text_tokenizer, overrides=None):
    cfg = load_yaml(PAPER_TOK)["prompts"] if overrides is None else overrides
    return PromptBuilder(build(PromptConfig, cfg, "prompts"), text_tokenizer)


@pytest.mark.parametrize("task, fields, instruction", [
    ("asr", {"text": "Tom lost his old red hat."},
     "Recognize the speech and give me the transcription."),
    ("ser", {"text": "x", "emotion": "sad"},
     "Please describe the emotion of the speaker in this speech. "),
    ("sqa", {"text": "x", "question": "What did Tom lose?", "answer": "His old red hat."},
     "Based on the speech content, provide a text-based answer to the question. "
     "The question is: What did Tom lose? ")])
def test_paper_prompts_are_the_reference_text(text_tokenizer, task, fields, instruction):
    """The reference's understanding input (USTokenizer.py prompt_wrap / forward, multi_prompt:
    the last train_prompt.json entry of asr / ser / stqa): bos, "USER: <Speech>", speech,
    "</Speech> {instruction}\\nASSISTANT:", then the answer text right after the colon + eos,
    text + eos cut at 300 tokens."""
    tok = text_tokenizer
    prefix, suffix, answer = _prompt_builder(tok).build(task, fields, variant=7)
    assert prefix == tok("USER: <Speech>").input_ids
    assert suffix == tok(f"</Speech> {instruction}\nASSISTANT:", add_special_tokens=False).input_ids
    gold = {"asr": fields["text"], "ser": fields.get("emotion"), "sqa": fields.get("answer")}[task]
    assert answer == tok(gold, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ours = _prompt_builder(tok, {})                       # defaults: a space before the answer
    assert ours.build(task, fields, 0)[2] == tok(" " + gold, add_special_tokens=False).input_ids \
        + [tok.eos_token_id] != answer


def test_paper_answer_cap_is_300_tokens(text_tokenizer):
    long = " ".join(["lamp"] * 400)
    _, _, answer = _prompt_builder(text_tokenizer).build("asr", {"text": long}, 0)
    assert len(answer) == 300 + 1 and answer[-1] == text_tokenizer.eos_token_id
    assert len(_prompt_builder(text_tokenizer, {}).build("asr", {"text": long}, 0)[2]) == 96 + 1


def test_short_clips_are_padded_to_one_second(tmp_path):
    """``data.min_seconds: 1.0`` (paper): the reference pads clips under 1 s with zeros to 1 s
    (dataset.py), so each gives >= 25 tokens; longer clips are untouched; default: no padding."""
    cuts = []
    for i, n in enumerate([8000, 24000]):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, 0.1 * np.random.default_rng(i).standard_normal(n), 16000, subtype="FLOAT")
        cut = speech_cut(Recording.from_file(path, recording_id=f"c{i}"), "a b", "spk")
        cuts.append(task_example(cut, "asr", text="a b"))
    cuts = CutSet.from_cuts(cuts)
    paper = build(tok_config.USTokenizerDataConfig, load_yaml(PAPER_TOK)["data"], "data")
    batch = UnderstandingDataset(None, train=True, min_seconds=paper.min_seconds)[cuts]
    assert batch["audio_lens"].tolist() == [16000, 24000]
    plain = UnderstandingDataset(None, train=True)[cuts]
    assert plain["audio_lens"].tolist() == [8000, 24000]
    assert torch.equal(batch["audio"][0, :8000], plain["audio"][0, :8000])
    assert batch["audio"][0, 8000:].abs().sum() == 0


def _reference_tokenizer_state(W=64, C=32, K=8, H=24, seed=0):
    """A reference USTokenizer ``model`` state, key by key with the names and shapes of its
    modules (USTokenizer.py, modules3/): Conv1d wrappers hold ``.conv``, Conv1d1x1 is bare,
    ConvTranspose1d holds ``.deconv``, the EMA codebook is [dim, K]. Its adapter's Linear takes
    output_channels = code_dim = W (it only runs with them equal)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"downsampling_conv.conv.weight": (W, W, 3), "downsampling_conv.conv.bias": (W,),
              "codec_encoder.conv.conv.weight": (C, W, 3)}
    for b in range(2):
        for u in range(2):
            shapes[f"codec_encoder.conv_blocks.{b}.res_units.{u}.conv1.conv.weight"] = (C, C, 3)
            shapes[f"codec_encoder.conv_blocks.{b}.res_units.{u}.conv2.weight"] = (C, C, 1)
        shapes[f"codec_encoder.conv_blocks.{b}.conv.conv.weight"] = (C, C, 3)
        shapes[f"codec_encoder.conv_blocks.{b}.conv.conv.bias"] = (C,)
    shapes["speech_llama_conv_proj.conv.weight"] = (W, C, 3)
    shapes["codec_decoder.conv1.conv.weight"] = (C, W, 3)
    for b in range(2):
        shapes[f"codec_decoder.conv_blocks.{b}.conv.conv.weight"] = (C, C, 3)
        shapes[f"codec_decoder.conv_blocks.{b}.conv.conv.bias"] = (C,)
        for u in range(2):
            shapes[f"codec_decoder.conv_blocks.{b}.res_units.{u}.conv1.conv.weight"] = (C, C, 3)
            shapes[f"codec_decoder.conv_blocks.{b}.res_units.{u}.conv2.weight"] = (C, C, 1)
    shapes.update({"codec_decoder.conv2.conv.weight": (W, C, 3),
                   "upsampling_conv.deconv.weight": (W, W, 3), "upsampling_conv.deconv.bias": (W,),
                   "vq.codebook.layers.0.embed": (W, K), "vq.codebook.layers.0.cluster_size": (K,),
                   "vq.codebook.layers.0.embed_avg": (W, K),
                   "llama_linear.weight": (H, W), "llama_linear.bias": (H,),
                   "llama_conv.conv.weight": (H, H, 3), "llama_conv.conv.bias": (H,)})
    state = {k: 0.2 * torch.randn(s, generator=g) for k, s in shapes.items()}
    state["vq.codebook.layers.0.cluster_size"] = torch.rand(K, generator=g) * 5
    return state


def _reference_order(state, side):
    """The reference's weights of one side in its computation order (for ``_reference_encoder`` /
    ``_reference_decoder``)."""
    if side == "enc":
        keys = ["downsampling_conv.conv.weight", "downsampling_conv.conv.bias",
                "codec_encoder.conv.conv.weight"]
        for b in range(2):
            for u in range(2):
                keys += [f"codec_encoder.conv_blocks.{b}.res_units.{u}.conv1.conv.weight",
                         f"codec_encoder.conv_blocks.{b}.res_units.{u}.conv2.weight"]
            keys += [f"codec_encoder.conv_blocks.{b}.conv.conv.weight",
                     f"codec_encoder.conv_blocks.{b}.conv.conv.bias"]
        return [state[k] for k in keys + ["speech_llama_conv_proj.conv.weight"]]
    keys = ["codec_decoder.conv1.conv.weight"]
    for b in range(2):
        keys += [f"codec_decoder.conv_blocks.{b}.conv.conv.weight",
                 f"codec_decoder.conv_blocks.{b}.conv.conv.bias"]
        for u in range(2):
            keys += [f"codec_decoder.conv_blocks.{b}.res_units.{u}.conv1.conv.weight",
                     f"codec_decoder.conv_blocks.{b}.res_units.{u}.conv2.weight"]
    keys += ["codec_decoder.conv2.conv.weight", "upsampling_conv.deconv.weight",
             "upsampling_conv.deconv.bias"]
    return [state[k] for k in keys]


def test_import_reference_ustokenizer_computes_the_reference(tmp_path):
    """``import_reference ustokenizer``: a reference checkpoint (plus a frozen Whisper key it
    drops) -> our tokenizer file whose encoder, codes and 2T-1-frame reconstruction equal the
    reference's computation on its own weights; the adapter lands as is."""
    from dualspeech.bin import import_reference
    from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer

    state = _reference_tokenizer_state()
    state["speech_encoder.conv1.weight"] = torch.zeros(2)
    codec = {"enc_strides": [1, 1], "enc_block_dilations": [1, 1], "bias": True, "codebook_num": 1}
    ckpt = tmp_path / "checkpoint_best.pth"
    torch.save({"model": state, "config": {"model": {"codec_config": codec}}, "epoch": 3}, ckpt)
    out = tmp_path / "tok" / "final.pt"
    import_reference.main(["ustokenizer", "--checkpoint", str(ckpt),
                           "--whisper", "random:whisper-debug", "--out", str(out)])
    tok = load_tokenizer(out)
    assert tok.cfg.arch == "repcodec" and tok.cfg.pad_to_30s and tok.vq.codebook_size == 8
    feats = torch.randn(1, 10, 64)
    with torch.no_grad():
        h, n25 = tok.encoder(feats, torch.tensor([10]))
        torch.testing.assert_close(h, _reference_encoder(_reference_order(state, "enc"), feats),
                                   atol=1e-5, rtol=1e-5)
        embed = state["vq.codebook.layers.0.embed"]                 # [dim, K]
        dist = h[0].pow(2).sum(1, keepdim=True) - 2 * h[0] @ embed + embed.pow(2).sum(0)[None]
        ids = dist.argmin(1)                                        # its forward_index
        assert torch.equal(tok.vq.codes(h[0]), ids) and len(ids.unique()) > 1
        zq = embed.t()[ids][None]
        rec = tok.decoder(zq, n25)
        torch.testing.assert_close(rec, _reference_decoder(_reference_order(state, "dec"), zq),
                                   atol=1e-5, rtol=1e-5)
    assert rec.shape[1] == 2 * int(n25[0]) - 1 == 9
    saved = torch.load(out, weights_only=True)["state_dict"]
    assert torch.equal(saved["adapter.proj.weight"], state["llama_linear.weight"])
    assert torch.equal(saved["adapter.conv.weight"], state["llama_conv.conv.weight"])
    assert torch.equal(saved["adapter.conv.bias"], state["llama_conv.conv.bias"])
    assert torch.equal(saved["tokenizer.vq.embed_sum"], state["vq.codebook.layers.0.embed_avg"].t())
    assert torch.equal(tok.vq.cluster_size, state["vq.codebook.layers.0.cluster_size"])
    assert not any(k.startswith(("speech_encoder", "tokenizer.frontend")) for k in saved)


@pytest.mark.parametrize("damage, message", [
    (lambda s, c: s.pop("codec_decoder.conv2.conv.weight"), r"missing \['codec_decoder.conv2"),
    (lambda s, c: s.update({"vq.codebook.layers.1.embed": torch.zeros(64, 8)}),
     r"unexpected \['vq.codebook.layers.1.embed'\]"),
    (lambda s, c: s.update({"llama_conv.conv.bias": torch.zeros(5)}),
     r"mis-shaped \['llama_conv.conv.bias \(5,\) \(for adapter.conv.bias \(24,\)"),
    (lambda s, c: c.update({"enc_block_dilations": [1, 3]}), r"codec_config .*enc_block_dilations"),
    (lambda s, c: s.pop("llama_linear.weight"), r"not a reference USTokenizer state"),
])
def test_import_reference_ustokenizer_rejects_what_does_not_fit(tmp_path, damage, message):
    from dualspeech.bin import import_reference

    state, codec = _reference_tokenizer_state(), {"bias": True}
    damage(state, codec)
    ckpt = tmp_path / "checkpoint_3.pth"
    torch.save({"model": state, "config": {"model": {"codec_config": codec}}}, ckpt)
    with pytest.raises(ValueError, match=message):
        import_reference.main(["ustokenizer", "--checkpoint", str(ckpt), "--whisper",
                               "random:whisper-debug", "--out", str(tmp_path / "final.pt")])
    assert not (tmp_path / "final.pt").exists()


def test_import_reference_ustokenizer_needs_the_training_whisper(tmp_path):
    from dualspeech.bin import import_reference

    ckpt = tmp_path / "checkpoint_3.pth"
    torch.save({"model": _reference_tokenizer_state(W=80)}, ckpt)
    with pytest.raises(ValueError, match="Whisper encoder of width 80"):
        import_reference.main(["ustokenizer", "--checkpoint", str(ckpt), "--whisper",
                               "random:whisper-debug", "--out", str(tmp_path / "final.pt")])
