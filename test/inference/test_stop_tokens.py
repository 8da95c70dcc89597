"""Text decoding stops on every end id: the tokenizer's eos, the chat template's end of turn
and the backbone generation config's eos list (a tiny random Phi-3 whose tokenizer ends a turn
with ``<|end|>``, distinct from its eos, as Phi-3.5 does)."""
from __future__ import annotations

import pytest
import torch

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    from dualspeech.models.dualspeechlm import DualSpeechLM
    from dualspeech.pretrained import resolve

    path = tmp_path_factory.mktemp("phi3")
    tok = AutoTokenizer.from_pretrained(resolve("random:llama-debug"))
    tok.add_special_tokens({"additional_special_tokens": ["<|end|>", "<|user|>", "<|assistant|>"]})
    tok.chat_template = CHAT
    end = tok.convert_tokens_to_ids("<|end|>")
    assert end != tok.eos_token_id
    cfg = Phi3Config(vocab_size=len(tok) + 5, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    llm = Phi3ForCausalLM(cfg)
    llm.generation_config = GenerationConfig(eos_token_id=[end, tok.eos_token_id],
                                             pad_token_id=tok.pad_token_id)
    llm.save_pretrained(path)
    tok.save_pretrained(path)
    model = DualSpeechLM.from_config({
        "model": {"llm": str(path), "speech": {"num_tokens": 16},
                  "lora": {"rank": 0}},
        "templates": {"chat_template": True}}).eval()
    return model, tok, end


def forced(model, ids: list[int]):
    """Wrap model.logits so that greedy decoding emits ``ids`` in turn (then the last one)."""
    real, step = model.logits, [0]

    def logits(h):
        out = real(h)
        if out.dim() == 2:   # one decoding step (B, V)
            out[:, ids[min(step[0], len(ids) - 1)]] += 1e4
            step[0] += 1
        return out
    return logits


def batch_of(model, tok):
    enc = model.templates.encode("asr", {"text": "x"}, {"primary": torch.arange(3).numpy()},
                                 with_answer=False)
    ids = torch.tensor([enc.input_ids])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "tasks": ["asr"]}


def test_stop_ids_cover_template_and_generation_config(phi3):
    from dualspeech.inference.lm_generation import text_stop_ids

    model, tok, end = phi3
    assert model.templates.end_ids == sorted({tok.eos_token_id, end})
    stops = text_stop_ids(model)
    assert stops[0] == tok.eos_token_id and set(stops) == {tok.eos_token_id, end}


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_text_decoding_stops_at_end_of_turn(phi3, monkeypatch, strategy):
    from dualspeech.config import build
    from dualspeech.inference.config import DecodeConfig
    from dualspeech.inference.generate import BatchGenerator
    from dualspeech.inference.lm_generation import generate_text

    model, tok, end = phi3
    hello, world = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (" hello", " world"))
    if strategy == "greedy":
        monkeypatch.setattr(model, "logits", forced(model, [hello, hello, end, world]))
        texts, ended = generate_text(model, batch_of(model, tok), max_new_tokens=8,
                                     do_sample=False, with_ended=True)
        assert texts == [tok.decode([hello, hello]).strip()] and ended == [True]
        monkeypatch.setattr(model, "logits", forced(model, [hello, world]))
        dec = BatchGenerator(model, build(DecodeConfig, {"text": {"strategy": "greedy",
                                                                   "max_new_tokens": 4}}, "decode"))
        out = dec.text({**batch_of(model, tok), "ids": ["u1"]})
        assert out[0].status == "max_new_tokens"      # a cut answer is counted, not "ok"
    else:   # the backbone's own generate (beam search) gets the same stop list
        real, seen = model.backbone.generate, {}

        def spy(**kw):
            seen.update(kw)
            return real(**kw)
        monkeypatch.setattr(model.backbone, "generate", spy)
        dec = BatchGenerator(model, build(DecodeConfig, {"text": {
            "strategy": "beam", "num_beams": 2, "max_new_tokens": 3}}, "decode"))
        dec.text({**batch_of(model, tok), "ids": ["u1"]})
        assert set(seen["eos_token_id"]) == {tok.eos_token_id, end}
