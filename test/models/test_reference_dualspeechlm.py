"""``import_reference dualspeechlm``: reference-layout DualSpeechLM checkpoints (lavendery/UUG
b259503), built here key by key with the names and shapes of its modules (``GPTPhi3ForCausalLM``
in ``src/model/modeling_phi3.py``, ``AnyGPT`` in ``src/model/causal_att.py``) on a tiny random
Phi-3 (transformers' architecture, which its modeling file copies), converted and checked:
every tensor lands in its place (vocabulary rows permuted), the logits equal the reference
computation, and the converted model decodes all 8 tasks."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from dualspeech.config import load_config
from dualspeech.models.reference import import_dualspeechlm

CONF = "egs/mini/conf/dualspeechlm_debug.yaml"
K, H, INTER, LAYERS = 32, 32, 64, 2            # speech tokens (the debug config's), Phi-3 sizes
D, N_CODES, GPT_LAYERS, SPK = 64, 64, 2, 256     # AcousticGPT: width, codes, blocks, speaker dim
WPE, COND_POS = 64, 1024                         # its wpe / pos_condition rows


def ref_shapes(T: int) -> dict[str, tuple]:
    """The reference's merged state: key -> shape (vocabulary: text, <audio>, </audio>, codes)."""
    V, VA = T + 2 + K, N_CODES + 4
    s = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H),
         "llama_decoder_proj.fc1.weight": (H, H), "llama_decoder_proj.fc1.bias": (H,),
         "llama_decoder_proj.fc2.weight": (D, H), "llama_decoder_proj.fc2.bias": (D,),
         "speaker_module.weight": (D, SPK), "gpt_head.weight": (VA, D),
         "lm_decoder.transformer.wte.weight": (VA, D), "lm_decoder.transformer.wpe.weight": (WPE, D),
         "lm_decoder.pos_condition.weight": (COND_POS, D),
         "lm_decoder.transformer.ln_f.weight": (D,), "lm_decoder.transformer.ln_f.bias": (D,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        s.update({p + "self_attn.qkv_proj.weight": (3 * H, H), p + "self_attn.o_proj.weight": (H, H),
                  p + "mlp.gate_up_proj.weight": (2 * INTER, H),
                  p + "mlp.down_proj.weight": (H, INTER),
                  p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,)})
    for i in range(GPT_LAYERS):
        p = f"lm_decoder.transformer.h.{i}."
        s.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,), p + "ln_2.weight": (D,),
                  p + "ln_2.bias": (D,), p + "attn.c_attn.weight": (3 * D, D),
                  p + "attn.c_attn.bias": (3 * D,), p + "attn.c_proj.weight": (D, D),
                  p + "attn.c_proj.bias": (D,), p + "mlp.c_fc.weight": (4 * D, D),
                  p + "mlp.c_fc.bias": (4 * D,), p + "mlp.c_proj.weight": (D, 4 * D),
                  p + "mlp.c_proj.bias": (D,)})
    return s


def random_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (1 + 0.1 * torch.randn(s, generator=g)) if ("norm" in k or ".ln_" in k)
            and k.endswith("weight") else 0.1 * torch.randn(s, generator=g)
            for k, s in shapes.items()}


def write_merged(directory, state, base_config: dict, T: int):
    """A checkpoint-merged-N dir as its merge script saves it (save_pretrained)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(
        {**base_config, "architectures": ["GPTPhi3ForCausalLM"], "vocab_size": T + 2 + K}))
    return directory


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """(base LLM dir, its text vocab size T, reference state, merged dir, converted dir)."""
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    from dualspeech.pretrained import resolve

    root = tmp_path_factory.mktemp("ref")
    tok = AutoTokenizer.from_pretrained(resolve("random:llama-debug"))
    T = len(tok)
    cfg = Phi3Config(vocab_size=T + 7, hidden_size=H, intermediate_size=INTER,
                     num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=4,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    Phi3ForCausalLM(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    state = random_state(ref_shapes(T), seed=1)
    merged = write_merged(root / "checkpoint-merged-10", state, cfg.to_dict(), T)
    out = import_dualspeechlm(merged, our_config(root / "base"), root / "converted")
    return {"base": root / "base", "T": T, "state": state, "merged": merged, "out": out,
            "config": cfg.to_dict()}


def our_config(base):
    return load_config(CONF, [f"model.llm={base}"])


def permuted(w: torch.Tensor, T: int) -> torch.Tensor:
    """Reference rows (text, <audio>, </audio>, codes) in our order (text, codes, boa, eoa)."""
    return torch.cat([w[:T], w[T + 2:], w[T:T + 1], w[T + 1:T + 2]])


def test_every_tensor_lands_in_its_place(ref):
    from safetensors.torch import load_file

    from dualspeech.config import load_yaml

    T, st, out = ref["T"], ref["state"], ref["out"]
    llm = load_file(str(out / "llm" / "model.safetensors"))
    extra = load_file(str(out / "extra.safetensors"))
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(llm[key], permuted(st[key], T))
    assert torch.equal(extra["speech_embed"], permuted(st["model.embed_tokens.weight"], T)[T:])
    assert torch.equal(extra["speech_head"], permuted(st["lm_head.weight"], T)[T:])
    llm_keys = [k for k in st if k.startswith(("model.", "lm_head."))]
    assert sorted(llm) == sorted(llm_keys)
    for key in llm_keys:
        if "embed_tokens" not in key and "lm_head" not in key:
            assert torch.equal(llm[key], st[key]), key
    ours = {"acoustic_gpt.adapter.0.weight": "llama_decoder_proj.fc1.weight",
            "acoustic_gpt.adapter.0.bias": "llama_decoder_proj.fc1.bias",
            "acoustic_gpt.adapter.2.weight": "llama_decoder_proj.fc2.weight",
            "acoustic_gpt.adapter.2.bias": "llama_decoder_proj.fc2.bias",
            "acoustic_gpt.spk_proj.weight": "speaker_module.weight",
            "acoustic_gpt.wte.weight": "lm_decoder.transformer.wte.weight",
            "acoustic_gpt.head": "gpt_head.weight",
            "acoustic_gpt.wpe.weight": "lm_decoder.transformer.wpe.weight",
            "acoustic_gpt.cpe.weight": "lm_decoder.pos_condition.weight",
            "acoustic_gpt.ln_f.weight": "lm_decoder.transformer.ln_f.weight",
            "acoustic_gpt.ln_f.bias": "lm_decoder.transformer.ln_f.bias"}
    for i in range(GPT_LAYERS):
        for a, b in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("attn.c_attn", "attn.c_attn"),
                     ("attn.c_proj", "attn.c_proj"), ("mlp.0", "mlp.c_fc"), ("mlp.2", "mlp.c_proj")):
            for p in ("weight", "bias"):
                ours[f"acoustic_gpt.blocks.{i}.{a}.{p}"] = f"lm_decoder.transformer.h.{i}.{b}.{p}"
    assert sorted(extra) == sorted([*ours, "speech_embed", "speech_head"])
    for a, b in ours.items():
        assert torch.equal(extra[a], st[b]), a
    assert len(ours) + len(llm_keys) == len(st)        # every reference tensor is used
    agpt = load_yaml(out / "config.yaml")["model"]["acoustic_gpt"]
    assert {k: agpt[k] for k in ("head", "gelu", "spk_bias", "dropout", "n_codes", "n_embd",
                                 "n_layer", "block_size", "cond_block_size", "spk_dim")} == \
        {"head": "untied", "gelu": "tanh", "spk_bias": False, "dropout": 0.0, "n_codes": N_CODES,
         "n_embd": D, "n_layer": GPT_LAYERS, "block_size": WPE, "cond_block_size": COND_POS,
         "spk_dim": SPK}


def reference_acoustic_logits(st, h, spk, tokens, n_head):
    """causal_att.AnyGPT + GPTPhi3ForCausalLM.forward's acoustic half, from its formulas: the
    condition [speaker_module(spk); Adapter(h)] + pos_condition(arange), tokens wte + wpe, the
    prefix bidirectional, tokens causal, new_gelu (tanh), gpt_head."""
    g = "lm_decoder.transformer."
    cond = F.linear(F.relu(F.linear(h, st["llama_decoder_proj.fc1.weight"],
                                    st["llama_decoder_proj.fc1.bias"])),
                    st["llama_decoder_proj.fc2.weight"], st["llama_decoder_proj.fc2.bias"])
    z = torch.cat([F.linear(spk, st["speaker_module.weight"])[:, None], cond], 1)
    c = z.shape[1]
    z = z + st["lm_decoder.pos_condition.weight"][:c]
    x = st[g + "wte.weight"][tokens] + st[g + "wpe.weight"][:tokens.shape[1]]
    x = torch.cat([z, x], 1)
    n = x.shape[1]
    mask = torch.ones(n, n).tril().bool()
    mask[:c, :c] = True

    def ln(x, name):
        return F.layer_norm(x, (D,), st[name + ".weight"], st[name + ".bias"], 1e-5)

    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    for i in range(GPT_LAYERS):
        p = f"{g}h.{i}."
        q, k, v = F.linear(ln(x, p + "ln_1"), st[p + "attn.c_attn.weight"],
                           st[p + "attn.c_attn.bias"]).split(D, 2)
        q, k, v = (t.view(1, n, n_head, D // n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // n_head)
        y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        y = y.transpose(1, 2).reshape(1, n, D)
        x = x + F.linear(y, st[p + "attn.c_proj.weight"], st[p + "attn.c_proj.bias"])
        m = gelu(F.linear(ln(x, p + "ln_2"), st[p + "mlp.c_fc.weight"], st[p + "mlp.c_fc.bias"]))
        x = x + F.linear(m, st[p + "mlp.c_proj.weight"], st[p + "mlp.c_proj.bias"])
    return F.linear(ln(x[:, c:], g + "ln_f"), st["gpt_head.weight"])


def test_logits_equal_the_reference_computation(ref):
    from transformers import Phi3Config, Phi3ForCausalLM

    from dualspeech.models.io import load_model

    T, st = ref["T"], ref["state"]
    cfg = Phi3Config(**{**ref["config"], "vocab_size": T + 2 + K})
    phi = Phi3ForCausalLM(cfg).eval()
    phi.load_state_dict({k: v for k, v in st.items() if k.startswith(("model.", "lm_head."))})
    codes = torch.tensor([3, 0, 31, 7, 7])
    ref_ids = torch.tensor([[5, 17, 200, T] + (T + 2 + codes).tolist() + [T + 1, 42]])
    our_ids = torch.tensor([[5, 17, 200, T + K] + (T + codes).tolist() + [T + K + 1, 42]])
    with torch.no_grad():
        out = phi(ref_ids, output_hidden_states=True)
        model = load_model(ref["out"])
        h, _ = model.hidden(our_ids, torch.ones_like(our_ids))
        ours = model.logits(h)
    perm = torch.cat([torch.arange(T), T + 2 + torch.arange(K), torch.tensor([T, T + 1])])
    torch.testing.assert_close(ours, out.logits[..., perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, out.hidden_states[-1], atol=1e-5, rtol=1e-5)
    spk = torch.randn(1, SPK, generator=torch.Generator().manual_seed(3))
    agpt = model.acoustic_gpt
    tokens = torch.tensor([[agpt.start_id, 5, 9, 63, agpt.end_id]])
    L = h.shape[1]
    with torch.no_grad():
        _, got = agpt(h, torch.ones(1, L, dtype=torch.bool), spk, tokens,
                      torch.ones_like(tokens, dtype=torch.bool), cond_pos=torch.arange(1, L + 1)[None])
        want = reference_acoustic_logits(st, out.hidden_states[-1], spk, tokens, n_head=4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_trainer_checkpoint_merges_lora_into_the_base(ref, tmp_path):
    """checkpoint-N: base_model.model. keys, LoRA A/B on the fused projections (peft 0.4's
    suffix match puts them on qkv_proj / gate_up_proj too) and the whole modules."""
    from safetensors.torch import load_file

    T, st = ref["T"], ref["state"]
    base = load_file(str(ref["base"] / "model.safetensors"))
    g = torch.Generator().manual_seed(5)
    adapter, want = {}, {}
    r, alpha = 4, 8
    for key, w in base.items():
        if key.endswith(("qkv_proj.weight", "o_proj.weight", "gate_up_proj.weight",
                         "down_proj.weight")):
            stem = key[:-len(".weight")]
            a, b = torch.randn(r, w.shape[1], generator=g), torch.randn(w.shape[0], r, generator=g)
            adapter[f"base_model.model.{stem}.lora_A.weight"] = a
            adapter[f"base_model.model.{stem}.lora_B.weight"] = b
            want[key] = w + alpha / r * b @ a
    modules = {k: v for k, v in st.items()   # all but the LoRA-adapted linear layers
               if not k.startswith("model.layers.") or "layernorm" in k}
    adapter.update({f"base_model.model.{k}": v for k, v in modules.items()})
    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    torch.save(adapter, ckpt / "adapter_model.bin")
    (ckpt / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "fan_in_fan_out": False,
         "target_modules": ["q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "down_proj",
                            "up_proj"], "modules_to_save": ["embed_tokens", "lm_head", "norm"]}))
    out = import_dualspeechlm(ckpt, our_config(ref["base"]), tmp_path / "converted")
    llm = load_file(str(out / "llm" / "model.safetensors"))
    for key, w in want.items():
        torch.testing.assert_close(llm[key], w, atol=1e-6, rtol=1e-6)
    assert torch.equal(llm["model.embed_tokens.weight"], permuted(st["model.embed_tokens.weight"], T))
    assert torch.equal(llm["model.norm.weight"], st["model.norm.weight"])
    assert torch.equal(load_file(str(out / "extra.safetensors"))["acoustic_gpt.head"],
                       st["gpt_head.weight"])


def test_reference_tokenizer_gives_the_ids(ref, tmp_path):
    """With the reference's extended tokenizer the ids are looked up: a tokenizer in another
    order (codes first) moves the rows accordingly."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    st = ref["state"]
    tok = AutoTokenizer.from_pretrained(ref["base"])
    tok.add_tokens([f"<a_{i}>" for i in range(K)] + ["<audio>", "</audio>"], special_tokens=True)
    tok.save_pretrained(tmp_path / "reftok")
    out = import_dualspeechlm(ref["merged"], our_config(ref["base"]), tmp_path / "c",
                              tokenizer=tmp_path / "reftok")
    emb = load_file(str(out / "llm" / "model.safetensors"))["model.embed_tokens.weight"]
    assert torch.equal(emb, st["model.embed_tokens.weight"])     # already our order
    short = AutoTokenizer.from_pretrained(ref["base"])
    short.add_tokens(["<audio>", "</audio>"], special_tokens=True)
    short.save_pretrained(tmp_path / "short")
    with pytest.raises(ValueError, match="lacks.*<a_0>"):
        import_dualspeechlm(ref["merged"], our_config(ref["base"]), tmp_path / "d",
                            tokenizer=tmp_path / "short")


@pytest.mark.parametrize("change,message", [
    ("drop:lm_decoder.transformer.h.1.mlp.c_fc.bias", "missing.*h.1.mlp.c_fc.bias"),
    ("drop:model.layers.0.self_attn.o_proj.weight", "missing.*layers.0.self_attn.o_proj"),
    ("add:lm_decoder.transformer.h.0.attn.extra", "unexpected.*h.0.attn.extra"),
    ("add:model.layers.0.mlp.extra", "unexpected.*layers.0.mlp.extra"),
    ("shape:llama_decoder_proj.fc2.weight", r"mis-shaped.*decoder_proj.fc2.weight \(64, 31\)"),
    ("shape:lm_decoder.transformer.h.0.mlp.c_fc.weight", r"mis-shaped.*h.0.mlp.c_fc.weight \(256, 63\)"),
    ("shape:model.norm.weight", r"mis-shaped.*model.norm.weight \(31,\)"),
    ("rows", "has .* rows"),
])
def test_bad_checkpoints_name_the_keys(ref, tmp_path, change, message):
    T, state = ref["T"], dict(ref["state"])
    kind, _, key = change.partition(":")
    if kind == "drop":
        state.pop(key)
    elif kind == "add":
        state[key] = torch.zeros(3)
    elif kind == "shape":
        state[key] = state[key][..., :-1].contiguous()
    else:
        for k in ("model.embed_tokens.weight", "lm_head.weight"):
            state[k] = state[k][:-1].contiguous()
    merged = write_merged(tmp_path / "m", state, ref["config"], T)
    with pytest.raises(ValueError, match=message):
        import_dualspeechlm(merged, our_config(ref["base"]), tmp_path / "out")


def test_converted_model_decodes_all_8_tasks(ref, tmp_path):
    from dualspeech.config import build, load_yaml
    from dualspeech.data.dataset import DataConfig
    from dualspeech.data.tasks import TASKS
    from dualspeech.inference.config import DecodeConfig
    from dualspeech.inference.runner import DecodeRunner
    from dualspeech.models.io import load_model
    from dualspeech.testing.toy import toy_codec, toy_data

    model = load_model(ref["out"])
    cfg = load_yaml(ref["out"] / "config.yaml")
    codec = toy_codec(tmp_path / "melvq.pt", N_CODES, griffin_lim_iters=2)
    data = toy_data(tmp_path / "data", cfg, n_per_task=2)
    dec = DecodeRunner(model, build(DecodeConfig, {
        "batch_size": 2, "text": {"strategy": "greedy", "max_new_tokens": 4},
        "speech": {"max_new_tokens": 6, "do_sample": False},
        "acoustic": {"max_len": 8, "top_k": 1}}, "decode"), codec, DataConfig(max_len=1024))
    for task in TASKS:
        counts = dec.decode(data, "toy", "test", task, tmp_path / "dec", resolved_config={})
        assert counts["merged"] and counts["skipped"] == 0, task
        recs = [json.loads(x) for x in
                (tmp_path / "dec" / f"toy_{task}_test" / "hyp.jsonl").read_text().splitlines()]
        assert len(recs) == 2
        if TASKS[task].kind == "understanding":
            assert all("text" in r for r in recs), task
        else:
            assert all(r["n_speech_tokens"] > 0 and r["n_acoustic"] > 0 and r["wav"]
                       for r in recs), (task, recs)


def test_a_tied_save_gives_a_tied_head(ref, tmp_path):
    """A save that kept only gpt_head (the two names shared one tensor) -> head: tied, wte =
    gpt_head; with both names the head is untied (test_every_tensor_lands_in_its_place)."""
    from safetensors.torch import load_file

    from dualspeech.config import load_yaml

    state = dict(ref["state"])
    state.pop("lm_decoder.transformer.wte.weight")
    merged = write_merged(tmp_path / "m", state, ref["config"], ref["T"])
    out = import_dualspeechlm(merged, our_config(ref["base"]), tmp_path / "out")
    assert load_yaml(out / "config.yaml")["model"]["acoustic_gpt"]["head"] == "tied"
    extra = load_file(str(out / "extra.safetensors"))
    assert "acoustic_gpt.head" not in extra
    assert torch.equal(extra["acoustic_gpt.wte.weight"], state["gpt_head.weight"])


def test_the_causal_mask_buffer_is_dropped(ref, tmp_path, caplog):
    """Its attention keeps a tril ``bias`` buffer when torch lacks SDPA: dropped, by name."""
    state = dict(ref["state"])
    state["lm_decoder.transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8).tril()
    merged = write_merged(tmp_path / "m", state, ref["config"], ref["T"])
    with caplog.at_level("INFO", logger="dualspeech.models.reference"):
        import_dualspeechlm(merged, our_config(ref["base"]), tmp_path / "out")
    assert "h.0.attn.bias" in caplog.text
