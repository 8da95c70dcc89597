"""The reference code's DualSpeechLM checkpoints (lavendery/UUG) -> this project's merged model dir.

Two inputs, one output (the layout ``bin/merge`` writes and ``models.io.load_model`` reads):

* ``checkpoint-merged-N`` (its ``src/tools/merge_lora_weights.py``): a Hugging Face dir of its
  ``GPTPhi3ForCausalLM`` with the vocabulary extended, LoRA merged, and the AcousticGPT, its
  adapter and speaker projection as extra top-level keys (``ACOUSTIC`` below);
* ``checkpoint-N`` (its HF trainer, peft): ``adapter_config.json`` + ``adapter_model.{safetensors,
  bin}``, every key prefixed ``base_model.model.``; LoRA ``lora_A`` / ``lora_B`` pairs and whole
  modules (``modules_to_save``: ``embed_tokens``, ``lm_head``, the norms, the acoustic parts) on
  top of the base LLM it was trained from. The pairs are merged (``W + alpha / r * B @ A``) and
  the modules replace the base's, which gives the state ``checkpoint-merged-N`` would hold.

Vocabulary: the reference adds ``<audio>``, ``</audio>`` and then ``<a_0>`` ... ``<a_{K-1}>``
after the text tokens; ours puts the K codes first and begin / end of audio last, so the
embedding and LM-head rows are permuted (``vocab_permutation``). Key names and shapes are the
reference's (``src/model/modeling_phi3.py``, ``src/model/causal_att.py``); its code is not
imported. Strict: every key is used or named as dropped, every shape is checked, and all
problems are reported together.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BEGIN, END, CODE = "<audio>", "</audio>", "<a_{}>"   # the reference's added tokens
PEFT_PREFIX = "base_model.model."
GPT = "lm_decoder.transformer."
# The causal-mask buffer its attention registers when torch lacks scaled_dot_product_attention:
# a constant, rebuilt here from the lengths.
DROPPED_SUFFIX = ".attn.bias"


def acoustic_key_map(n_layer: int) -> dict[str, str]:
    """Reference key -> our DualSpeechLM key, for the AcousticGPT side (``gpt_head`` apart)."""
    m = {"llama_decoder_proj.fc1.weight": "acoustic_gpt.adapter.0.weight",
         "llama_decoder_proj.fc1.bias": "acoustic_gpt.adapter.0.bias",
         "llama_decoder_proj.fc2.weight": "acoustic_gpt.adapter.2.weight",
         "llama_decoder_proj.fc2.bias": "acoustic_gpt.adapter.2.bias",
         "speaker_module.weight": "acoustic_gpt.spk_proj.weight",
         f"{GPT}wte.weight": "acoustic_gpt.wte.weight",
         f"{GPT}wpe.weight": "acoustic_gpt.wpe.weight",
         "lm_decoder.pos_condition.weight": "acoustic_gpt.cpe.weight",
         f"{GPT}ln_f.weight": "acoustic_gpt.ln_f.weight",
         f"{GPT}ln_f.bias": "acoustic_gpt.ln_f.bias"}
    inner = {"ln_1": "ln_1", "attn.c_attn": "attn.c_attn", "attn.c_proj": "attn.c_proj",
             "ln_2": "ln_2", "mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.2"}
    for i in range(n_layer):
        for ref, ours in inner.items():
            for p in ("weight", "bias"):
                m[f"{GPT}h.{i}.{ref}.{p}"] = f"acoustic_gpt.blocks.{i}.{ours}.{p}"
    return m


def n_blocks(state: dict) -> int:
    """AnyGPT blocks in a state: the number of distinct ``lm_decoder.transformer.h.<i>``."""
    return len({k[len(GPT) + 2:].split(".")[0] for k in state if k.startswith(f"{GPT}h.")})


def is_acoustic(key: str) -> bool:
    return key.startswith(("llama_decoder_proj.", "speaker_module.", "lm_decoder.", "gpt_head."))


# ----------------------------------------------------------------------------- reading inputs
def read_hf_state(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model dir (safetensors, sharded or not, or .bin)."""
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if files:
        state = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    files = sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors or pytorch_model*.bin weights")
    state = {}
    for f in files:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


def read_merged(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, state) of a ``checkpoint-merged-N`` dir."""
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: expected the reference's checkpoint-merged-N "
                                "(a Hugging Face dir with config.json)")
    return json.loads((directory / "config.json").read_text()), read_hf_state(directory)


def read_trainer(directory: Path, base: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, state) that ``checkpoint-merged-N`` of the trainer's ``checkpoint-N``
    would hold: its LoRA pairs merged into the base LLM's weights, its whole modules in place."""
    cfg_path = directory / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory}: expected the reference trainer's checkpoint-N "
                                "(adapter_config.json + adapter_model.safetensors / .bin)")
    peft_cfg = json.loads(cfg_path.read_text())
    if peft_cfg.get("peft_type", "LORA") != "LORA" or peft_cfg.get("fan_in_fan_out") \
            or peft_cfg.get("use_rslora") or peft_cfg.get("use_dora"):
        raise ValueError(f"{cfg_path}: only plain LoRA is converted (the reference's); got "
                         f"{ {k: peft_cfg.get(k) for k in ('peft_type', 'fan_in_fan_out', 'use_rslora', 'use_dora')} }")
    weights = directory / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        adapter = load_file(str(weights))
    elif (directory / "adapter_model.bin").is_file():
        adapter = torch.load(directory / "adapter_model.bin", map_location="cpu",
                             weights_only=True)
    else:
        raise FileNotFoundError(f"{directory}: no adapter_model.safetensors / adapter_model.bin")
    unprefixed = [k for k in adapter if not k.startswith(PEFT_PREFIX)]
    if unprefixed:
        raise ValueError(f"{weights.parent}: keys without the peft prefix {PEFT_PREFIX!r}: "
                         f"{unprefixed[:5]}")
    adapter = {k[len(PEFT_PREFIX):]: v for k, v in adapter.items()}
    config, state = read_merged(base)
    state = dict(state)
    scale = float(peft_cfg["lora_alpha"]) / float(peft_cfg["r"])
    problems, merged = [], 0
    for key in sorted(k for k in adapter if ".lora_A." in k):
        stem, tail = key.split(".lora_A.")
        b_key, w_key = f"{stem}.lora_B.{tail}", f"{stem}.{tail}"
        a, b = adapter[key], adapter.get(b_key)
        if b is None:
            problems.append(f"{key} without {b_key}")
        elif w_key not in state:
            problems.append(f"{key}: the base LLM has no {w_key}")
        elif a.shape[0] != peft_cfg["r"] or b.shape != (state[w_key].shape[0], a.shape[0]) \
                or a.shape[1] != state[w_key].shape[1]:
            problems.append(f"{stem}: lora_A {tuple(a.shape)}, lora_B {tuple(b.shape)} do not fit "
                            f"{w_key} {tuple(state[w_key].shape)} with r={peft_cfg['r']}")
        else:
            w = state[w_key]
            state[w_key] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
            merged += 1
    orphans = [k for k in adapter if ".lora_B." in k
               and k.replace(".lora_B.", ".lora_A.") not in adapter]
    other = [k for k in adapter if "lora_" in k and ".lora_A." not in k and ".lora_B." not in k]
    problems += [f"{k} without its lora_A" for k in orphans]
    problems += [f"{k}: not a LoRA A / B weight" for k in other]
    if problems:
        raise ValueError(f"{directory}: the LoRA weights do not fit the base LLM {base}: "
                         + "; ".join(problems))
    modules = {k: v for k, v in adapter.items() if "lora_" not in k}
    for k, v in modules.items():
        if k in state and state[k].shape != v.shape and not k.endswith(("embed_tokens.weight",
                                                                         "lm_head.weight")):
            problems.append(f"{k} {tuple(v.shape)} (base {tuple(state[k].shape)})")
        state[k] = v
    if problems:
        raise ValueError(f"{directory}: saved modules do not fit the base LLM: {problems}")
    config = dict(config)
    embed = modules.get("model.embed_tokens.weight")
    if embed is not None:
        config["vocab_size"] = embed.shape[0]
    log.info("%s: merged %d LoRA pairs (alpha/r = %g) into %s, %d whole modules", directory,
             merged, scale, base, len(modules))
    return config, state


# ----------------------------------------------------------------------------- the vocabulary
def reference_ids(text_vocab: int, num_tokens: int, tokenizer=None) -> tuple[int, int, list[int]]:
    """(``<audio>`` id, ``</audio>`` id, ids of ``<a_0>`` ...) in the reference's vocabulary:
    looked up in its tokenizer when given, else its order (``<audio>``, ``</audio>``, codes)."""
    if tokenizer is None:
        log.info("no reference tokenizer given: assuming its order <audio>=%d, </audio>=%d, "
                 "<a_i>=%d+i", text_vocab, text_vocab + 1, text_vocab + 2)
        return text_vocab, text_vocab + 1, list(range(text_vocab + 2, text_vocab + 2 + num_tokens))
    names = [BEGIN, END] + [CODE.format(i) for i in range(num_tokens)]
    ids = tokenizer.convert_tokens_to_ids(names)
    lacking = [n for n, i in zip(names, ids) if i is None or i == tokenizer.unk_token_id]
    if lacking:
        raise ValueError(f"the reference tokenizer lacks {lacking[:5]} ({len(lacking)} of the "
                         f"{len(names)} speech tokens; model.speech.num_tokens={num_tokens})")
    if sorted(ids) != list(range(text_vocab, text_vocab + len(names))) or len(tokenizer) != \
            text_vocab + len(names):
        raise ValueError(f"the reference tokenizer ({len(tokenizer)} tokens) does not hold the "
                         f"{len(names)} speech tokens right after the {text_vocab} text tokens "
                         "of the base LLM")
    return ids[0], ids[1], ids[2:]


def vocab_permutation(text_vocab: int, begin: int, end: int, codes: list[int]) -> torch.Tensor:
    """For each of our rows (text, codes, begin, end of audio) the reference row it takes."""
    return torch.tensor(list(range(text_vocab)) + list(codes) + [begin, end])


# ----------------------------------------------------------------------------- conversion
def _expected_llm(config: dict) -> tuple[object, dict[str, torch.Size]]:
    """(HF config, key -> shape) of the plain causal LM the reference's LLM side is."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = {k: v for k, v in config.items() if k not in ("auto_map", "architectures")}
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ValueError("the reference config.json has no model_type")
    hf_cfg = AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_cfg)
    hf_cfg.architectures = [type(model).__name__]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if getattr(hf_cfg, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)
    return hf_cfg, shapes


def head_kind(state: dict[str, torch.Tensor]) -> str:
    """``untied`` when the state holds ``gpt_head`` apart from ``wte`` (peft's copy untied
    them), ``tied`` when a save kept only one of the two names."""
    return "untied" if "gpt_head.weight" in state and f"{GPT}wte.weight" in state else "tied"


def split_state(state: dict[str, torch.Tensor], llm_shapes: dict[str, torch.Size],
                expected_acoustic: dict[str, torch.Size]) -> tuple[dict, dict]:
    """Reference state -> (LLM state, our AcousticGPT state).

    ``llm_shapes``: key -> shape of our LLM (the vocabulary rows are the same count in both
    orders); ``expected_acoustic``: our ``acoustic_gpt.*`` key -> shape (head when untied)."""
    mapping = acoustic_key_map(n_blocks(state))
    wte = f"{GPT}wte.weight"
    head = head_kind(state)
    if head == "tied" and "gpt_head.weight" in state:   # a tied save keeps one of the two names
        state = {**state, wte: state["gpt_head.weight"]}
        state.pop("gpt_head.weight")
    if head == "untied":
        mapping["gpt_head.weight"] = "acoustic_gpt.head"
    dropped = [k for k in state if k.startswith(f"{GPT}h.") and k.endswith(DROPPED_SUFFIX)]
    missing, unexpected, misshaped = [], [], []
    llm, acoustic = {}, {}
    for key, value in state.items():
        if key in dropped:
            continue
        if is_acoustic(key):
            ours = mapping.get(key)
            if ours is None:
                unexpected.append(key)
            elif ours not in expected_acoustic:
                unexpected.append(f"{key} (for {ours})")
            elif value.shape != expected_acoustic[ours]:
                misshaped.append(f"{key} {tuple(value.shape)} (for {ours} "
                                 f"{tuple(expected_acoustic[ours])})")
            else:
                acoustic[ours] = value
        elif key not in llm_shapes:
            unexpected.append(key)
        elif value.shape != llm_shapes[key]:
            misshaped.append(f"{key} {tuple(value.shape)} (expected {tuple(llm_shapes[key])})")
        else:
            llm[key] = value
    missing += [k for k in llm_shapes if k not in state]
    missing += [ref for ref, ours in mapping.items() if ref not in state and ours in
                expected_acoustic]
    missing += [f"(reference key for {ours})" for ours in expected_acoustic
                if ours not in mapping.values()]
    if missing or unexpected or misshaped:
        raise ValueError("the reference DualSpeechLM state does not fit: "
                         f"missing {missing}, unexpected {unexpected}, mis-shaped {misshaped}")
    if dropped:
        log.info("dropped %d causal-mask buffers (%s...)", len(dropped), dropped[0])
    return llm, acoustic


def acoustic_sizes(state: dict[str, torch.Tensor]) -> dict:
    """AcousticGPT config values the reference state fixes (its head count is not one)."""
    need = [f"{GPT}wpe.weight", "lm_decoder.pos_condition.weight", "speaker_module.weight"]
    wte = state.get(f"{GPT}wte.weight", state.get("gpt_head.weight"))
    lacking = [k for k in need if k not in state] + ([] if wte is not None else
                                                     [f"{GPT}wte.weight / gpt_head.weight"])
    if lacking:
        raise ValueError(f"the reference state lacks the AcousticGPT keys {lacking}: is it a "
                         "DualSpeechLM (GPTPhi3ForCausalLM) checkpoint?")
    return {"n_codes": wte.shape[0] - 4, "n_embd": wte.shape[1],
            "n_layer": n_blocks(state),
            "block_size": state[f"{GPT}wpe.weight"].shape[0],
            "cond_block_size": state["lm_decoder.pos_condition.weight"].shape[0],
            "spk_dim": state["speaker_module.weight"].shape[1]}


def reference_model_config(cfg: dict, sizes: dict, head: str) -> dict:
    """Our full config for the converted model: the reference's AcousticGPT computation, the
    merged layout (``llm/``, no LoRA, nothing of the backbone trained)."""
    cfg = copy.deepcopy(cfg)
    model = cfg.setdefault("model", {})
    given = model.get("acoustic_gpt") or {}
    changed = {k: (given[k], v) for k, v in sizes.items() if k in given and given[k] != v}
    if changed:
        log.info("model.acoustic_gpt values taken from the reference checkpoint (config -> "
                 "checkpoint): %s", changed)
    agpt = {**(model.get("acoustic_gpt") or {}), **sizes,
            "dropout": 0.0, "gelu": "tanh", "spk_bias": False, "head": head}
    agpt.setdefault("n_head", 8)   # the reference's; not fixed by any shape
    model.update(llm="llm", acoustic_gpt=agpt, train_norms=False, train_text_rows=False)
    model.setdefault("lora", {})["rank"] = 0
    return cfg


def import_dualspeechlm(source: str | Path, config: dict, out: str | Path,
                        base: str | None = None, tokenizer: str | Path | None = None) -> Path:
    """A reference ``checkpoint-merged-N`` or trainer ``checkpoint-N`` dir -> our merged model
    dir at ``out``. ``config``: our DualSpeechLM config (its ``model.llm`` is the base LLM: its
    text tokenizer, and for ``checkpoint-N`` its weights unless ``base`` names them);
    ``tokenizer``: the reference's extended tokenizer dir, to look the speech ids up."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from dualspeech.config import build, save_config
    from dualspeech.data.vocab import SpeechVocab, SpeechVocabConfig
    from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig
    from dualspeech.models.io import load_model
    from dualspeech.pretrained import resolve
    from dualspeech.utils.io import atomic_path

    source, out = Path(source), Path(out)
    llm_spec = config.get("model", {}).get("llm")
    if not llm_spec:
        raise ValueError("the config needs model.llm: the base LLM the reference was trained on")
    base_dir = resolve(base or llm_spec)
    if (source / "adapter_config.json").is_file():
        ref_config, state = read_trainer(source, base_dir)
    else:
        ref_config, state = read_merged(source)
    hf_cfg, llm_shapes = _expected_llm(ref_config)
    sizes = acoustic_sizes(state)
    head = head_kind(state)
    cfg = reference_model_config(config, sizes, head)

    text_tok = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    vocab = SpeechVocab.extend(text_tok, SpeechVocabConfig(**cfg["model"].get("speech", {})))
    T, K = vocab.text_vocab_size, vocab.cfg.num_tokens
    ref_tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True) if tokenizer else None
    perm = vocab_permutation(T, *reference_ids(T, K, ref_tok))
    rows = state.get("model.embed_tokens.weight")
    if rows is not None and rows.shape[0] != vocab.size:
        raise ValueError(f"model.embed_tokens.weight has {rows.shape[0]} rows; the {T} text tokens "
                         f"of {llm_spec} + {K} codes (model.speech.num_tokens) + <audio>, "
                         f"</audio> make {vocab.size}: set model.speech.num_tokens or the base LLM")

    # our AcousticGPT's keys and shapes, from a model of the converted config
    agpt = AcousticGPT(build(AcousticGPTConfig, {**cfg["model"]["acoustic_gpt"],
                                                 "cond_dim": hf_cfg.hidden_size},
                             "model.acoustic_gpt"))
    expected = {f"acoustic_gpt.{k}": v.shape for k, v in agpt.state_dict().items()}
    hf_cfg.vocab_size = vocab.size
    llm_shapes = {k: (torch.Size([vocab.size, s[1]]) if k.endswith(("embed_tokens.weight",
                                                                    "lm_head.weight")) else s)
                  for k, s in llm_shapes.items()}
    llm_state, acoustic = split_state(state, llm_shapes, expected)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in llm_state:
            llm_state[key] = llm_state[key][perm].contiguous()

    agpt.load_state_dict({k[len("acoustic_gpt."):]: v.float() for k, v in acoustic.items()},
                         strict=True)
    # the LLM is written as it is (its keys were checked against the architecture above), not
    # built: a random 3.8B model would cost minutes and twice the memory
    (out / "llm").mkdir(parents=True, exist_ok=True)
    hf_cfg.save_pretrained(out / "llm")
    for name in ("generation_config.json",):
        for where in (source, base_dir):
            if (where / name).is_file():
                shutil.copyfile(where / name, out / "llm" / name)
                break
    with atomic_path(out / "llm" / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in llm_state.items()}, str(tmp),
                  metadata={"format": "pt"})
    vocab.tokenizer.save_pretrained(out / "llm")
    vocab.save(out / "tokenizer")
    save_config(cfg, out)
    extra = {f"acoustic_gpt.{n}": p.detach().float().contiguous()
             for n, p in agpt.named_parameters()}
    extra["speech_embed"] = llm_state["model.embed_tokens.weight"][T:].float().contiguous()
    if "lm_head.weight" in llm_state:
        extra["speech_head"] = llm_state["lm_head.weight"][T:].float().contiguous()
    with atomic_path(out / "extra.safetensors") as tmp:
        save_file(extra, str(tmp))
    model = load_model(out)   # the written dir loads, and every trainable tensor was written
    unwritten = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in extra)
    if unwritten:
        raise AssertionError(f"the converted model has parameters the import did not write: "
                             f"{unwritten[:5]}")
    log.info("%s -> %s: %d text + %d speech tokens (rows permuted into our order), AcousticGPT "
             "%d x %d, head %s", source, out, T, vocab.num_new, sizes["n_layer"], sizes["n_embd"],
             head)
    return out
