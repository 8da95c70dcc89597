"""DualSpeechLM building blocks: vocabulary, templates, AcousticGPT decoding, LoRA, sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dualspeech.data.sampler import SamplerConfig, TaskBatchSampler, padding_efficiency
from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig
from dualspeech.data.templates import IGNORE, TaskTemplates, TemplateConfig
from dualspeech.data.vocab import SpeechVocab, SpeechVocabConfig


def tiny_gpt(**kw) -> AcousticGPT:
    torch.manual_seed(0)
    cfg = dict(n_codes=40, n_layer=2, n_embd=32, n_head=4, block_size=300, spk_dim=7,
               cond_dim=16)
    return AcousticGPT(AcousticGPTConfig(**{**cfg, **kw})).eval()


def cond_batch():
    torch.manual_seed(1)
    cond = torch.randn(3, 6, 16)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5]).bool()
    return cond, mask, torch.randn(3, 7)


@pytest.mark.parametrize("top_k", [1, 10])
def test_acoustic_gpt_kv_cache_equals_full_recompute(top_k):
    gpt = tiny_gpt()
    cond, mask, spk = cond_batch()
    runs = [gpt.generate(cond, mask, spk, max_len=40, top_k=top_k, min_len=5,
                         generator=torch.Generator().manual_seed(5), use_cache=cache)
            for cache in (True, False)]
    assert [r.tolist() for r in runs[0]] == [r.tolist() for r in runs[1]]
    assert all(len(r) >= 5 for r in runs[0])
    # an example decoded alone (no padding) gives what it gets inside the padded batch
    alone = gpt.generate(cond[1:2, :4], mask[1:2, :4], spk[1:2], max_len=40, top_k=1, min_len=5)
    if top_k == 1:
        assert alone[0].tolist() == runs[0][1].tolist()


def test_acoustic_gpt_per_example_length_limits():
    gpt = tiny_gpt()
    cond, mask, spk = cond_batch()
    free = gpt.generate(cond, mask, spk, max_len=12, top_k=1, min_len=12)
    capped = gpt.generate(cond, mask, spk, max_len=torch.tensor([3, 12, 0]), top_k=1, min_len=12)
    assert [len(c) for c in capped] == [3, 12, 0]
    # a capped example ends early without changing what the others generate
    assert capped[0].tolist() == free[0][:3].tolist()
    assert capped[1].tolist() == free[1].tolist()


def test_acoustic_gpt_prefix_bidirectional_tokens_causal():
    gpt = tiny_gpt()
    cond, mask, spk = cond_batch()
    tokens, tmask = gpt.make_tokens([torch.randint(0, 40, (n,)) for n in (5, 3, 8)])
    _, logits = gpt(cond, mask, spk, tokens, tmask)
    changed = tokens.clone()
    changed[:, 3] = 7                        # a later token must not change earlier logits
    _, logits2 = gpt(cond, mask, spk, changed, tmask)
    assert torch.allclose(logits[:, :3], logits2[:, :3], atol=1e-6)
    assert not torch.allclose(logits[0, 3:6], logits2[0, 3:6])
    cond2 = cond.clone()
    cond2[0, 5] += 1.0                       # the last prefix frame reaches every token
    _, logits3 = gpt(cond2, mask, spk, tokens, tmask)
    assert not torch.allclose(logits[0, 0], logits3[0, 0])
    cond2 = cond.clone()
    cond2[1, 5] += 100.0                     # padded condition frames are ignored
    _, logits4 = gpt(cond2, mask, spk, tokens, tmask)
    assert torch.allclose(logits[1], logits4[1], atol=1e-5)
    with pytest.raises(ValueError, match="acoustic codes"):
        gpt.make_tokens([torch.tensor([40])])


@pytest.fixture(scope="module")
def vocab():
    from dualspeech.pretrained import load_causal_lm

    _, tok = load_causal_lm("random:llama-debug")
    return SpeechVocab.extend(tok, SpeechVocabConfig(num_tokens=16))


def test_vocab_ids_are_looked_up_and_saved(vocab, tmp_path):
    tok = vocab.tokenizer
    assert vocab.first_id == tok.convert_tokens_to_ids("<|s_0|>") == vocab.text_vocab_size
    assert vocab.end_audio_id == tok.convert_tokens_to_ids("<|end_of_audio|>")
    ids = vocab.speech_ids(np.array([0, 15, 3]))
    assert tok.decode(ids.tolist()) == "<|s_0|><|s_15|><|s_3|>"
    assert vocab.codes(torch.cat([torch.tensor([5]), ids])).tolist() == [0, 15, 3]
    with pytest.raises(ValueError, match="num_tokens=16"):
        vocab.speech_ids([16])
    vocab.save(tmp_path)
    again = SpeechVocab.load(tmp_path)
    assert (again.first_id, again.end_audio_id, again.size) == (
        vocab.first_id, vocab.end_audio_id, vocab.size)
    with pytest.raises(ValueError, match="already has"):
        SpeechVocab.extend(again.tokenizer, SpeechVocabConfig(num_tokens=16))


def test_templates_labels_and_prompts(vocab):
    tpl = TaskTemplates(TemplateConfig(), vocab)
    asr = tpl.encode("asr", {"text": "hello world"}, {"primary": np.arange(5)})
    answer = [i for i, lab in zip(asr.input_ids, asr.labels) if lab != IGNORE]
    assert vocab.tokenizer.decode(answer[:-1]).strip() == "hello world"
    assert answer[-1] == tpl.eos_id and all(lab == IGNORE for lab in asr.labels[:asr.prompt_len])
    assert asr.input_ids.count(vocab.begin_audio_id) == 1
    assert len(asr.input_ids) == tpl.length("asr", {"text": "hello world"}, {"primary": 5})
    tts = tpl.encode("tts", {"text": "hi"}, {}, target=np.array([1, 2, 3]))
    assert tts.input_ids[tts.prompt_len - 1] == vocab.begin_audio_id
    start, end = tts.target_span
    assert vocab.codes(torch.tensor(tts.input_ids[start:end])).tolist() == [1, 2, 3]
    assert tts.labels[start:] == tts.input_ids[start:] and tts.input_ids[-1] == vocab.end_audio_id
    sc = tpl.encode("sc", {}, {"primary": np.arange(2), "question": np.arange(3)},
                    target=np.arange(4), with_answer=False)
    assert sc.input_ids.count(vocab.begin_audio_id) == 3 and len(sc.input_ids) == sc.prompt_len
    with pytest.raises(ValueError, match="may only use"):
        TaskTemplates(TemplateConfig(prompts={"asr": "say {text} {speech}"}), vocab)
    chat = TaskTemplates(TemplateConfig(chat_template=True), vocab)
    enc = chat.encode("asr", {"text": "x"}, {"primary": np.arange(4)}, with_answer=False)
    assert "<|im_start|>assistant" in vocab.tokenizer.decode(enc.input_ids)
    assert vocab.codes(torch.tensor(enc.input_ids)).tolist() == [0, 1, 2, 3]


def test_lora_on_tiny_phi3_with_fused_projections(tmp_path, vocab):
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    from dualspeech.models.dualspeechlm import DualSpeechLM
    from dualspeech.pretrained import resolve

    tok = AutoTokenizer.from_pretrained(resolve("random:llama-debug"))
    cfg = Phi3Config(vocab_size=len(tok) + 7, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    Phi3ForCausalLM(cfg).save_pretrained(tmp_path / "phi3")
    tok.save_pretrained(tmp_path / "phi3")
    model = DualSpeechLM.from_config({"model": {
        "llm": str(tmp_path / "phi3"), "speech": {"num_tokens": 16},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0,
                 "targets": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}}})
    names = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert any("qkv_proj" in n for n in names) and any("gate_up_proj" in n for n in names)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    big = [n for n, p in trainable.items() if p.shape[0] >= len(tok)]
    assert not big, f"full vocabulary matrices must stay frozen: {big}"
    assert model.speech_embed.shape == model.speech_head.shape == (18, 32)   # untied head
    tpl = model.templates
    enc = [tpl.encode("tts", {"text": "a b"}, {}, target=np.arange(4)),
           tpl.encode("asr", {"text": "c"}, {"primary": np.arange(3)})]
    from dualspeech.data.templates import pad_batch

    ids = pad_batch([e.input_ids for e in enc], 0)
    batch = {"input_ids": ids, "attention_mask": pad_batch([[1] * len(e.input_ids) for e in enc], 0),
             "labels": pad_batch([e.labels for e in enc], IGNORE),
             "is_generation": torch.tensor([True, False])}
    out = model(batch)
    out["loss"].backward()
    assert out["has_text"] == 1 and out["has_semantic"] == 1
    assert model.speech_head.grad.abs().sum() > 0 and model.speech_embed.grad.abs().sum() > 0
    assert all(trainable[n].grad is not None for n in names)
    grad = model.speech_head.grad.clone()
    model.zero_grad()
    model.gradient_checkpointing_enable()      # the GPU configs' setting: same loss and grads
    again = model(batch)
    again["loss"].backward()
    assert torch.allclose(again["loss"], out["loss"]) and torch.allclose(
        model.speech_head.grad, grad, atol=1e-6)
    logits = model.logits(torch.randn(2, 32))
    assert logits.shape == (2, vocab.size)   # padding rows of the Phi-3 head are not exposed


def test_sampler_mixing_bucketing_and_determinism():
    rng = np.random.default_rng(0)
    lengths = {"asr": list(rng.integers(20, 400, 300)), "tts": list(rng.integers(50, 600, 200)),
               "ser": list(rng.integers(20, 300, 50))}
    cfg = SamplerConfig(weights={"asr": 0.5, "tts": 0.5, "ser": 0.0}, max_tokens=2000,
                        buffer_batches=8)
    s = TaskBatchSampler(lengths, cfg, rank=0, world_size=1)
    a, b = list(s), list(s)
    assert a == b
    s.set_epoch(1)
    assert list(s) != a
    assert all(len({t for t, _ in batch}) == 1 for batch in a)
    assert {t for batch in a for t, _ in batch} == {"asr", "tts"}
    lens = {t: np.asarray(v) for t, v in lengths.items()}
    assert all(len(b) * max(lens[t][i] for t, i in b) <= 2000 or len(b) == 1 for b in a)
    assert padding_efficiency(a, lens) > 0.85
    ranks = [list(TaskBatchSampler(lengths, cfg, rank=r, world_size=2)) for r in (0, 1)]
    s.set_epoch(0)
    assert [x for pair in zip(*ranks) for x in pair] == s.global_batches(0)[:2 * len(ranks[0])]
    mixed = TaskBatchSampler(lengths, SamplerConfig(weights=cfg.weights, mode="mixed",
                                                    max_tokens=2000), rank=0, world_size=1)
    assert any(len({t for t, _ in batch}) > 1 for batch in mixed)
    with pytest.raises(ValueError, match="no weight"):
        TaskBatchSampler(lengths, SamplerConfig(weights={"asr": 1.0}), rank=0, world_size=1)


def test_lm_configs_build():
    """Every shipped DualSpeechLM config validates (without loading any backbone)."""
    from pathlib import Path

    from dualspeech.config import build, load_config
    from dualspeech.data.dataset import DataConfig
    from dualspeech.models.dualspeechlm import ModelConfig
    from dualspeech.training import TrainerConfig

    repo = Path(__file__).resolve().parents[2]
    names = ["mini/conf/dualspeechlm_debug", "mini/conf/dualspeechlm_mini",
             "multitask/conf/dualspeechlm_phi35", "multitask/conf/dualspeechlm_vicuna7b",
             "multitask/conf/dualspeechlm_hubert", "multitask/conf/baseline_acoustic",
             "multitask/conf/baseline_semantic"]
    variants = {}
    for name in names:
        cfg = load_config(repo / "egs" / f"{name}.yaml")
        model = build(ModelConfig, cfg["model"], "model")
        build(TemplateConfig, cfg.get("templates"), "templates")
        build(DataConfig, cfg["data"], "data")
        build(TrainerConfig, cfg["trainer"], "trainer")
        variants[name.split("/")[-1]] = (model.speech.field, model.acoustic_gpt is not None)
    assert variants["baseline_acoustic"] == ("acoustic_tokens", False)
    assert variants["baseline_semantic"] == ("hubert_tokens", False)
    assert variants["dualspeechlm_hubert"] == ("hubert_tokens", True)
    assert variants["dualspeechlm_phi35"] == ("ustokens", True)
