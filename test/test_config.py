"""dualspeech.config: YAML + includes, dotted overrides, typed validation, saved configs."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from dualspeech.config import (ConfigError, add_config_args, build, config_files, config_from_args,
                               load_config, save_config)


@dataclasses.dataclass
class Lora:
    rank: int = 8
    alpha: float = 16.0
    targets: list[str] = dataclasses.field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclasses.dataclass
class Model:
    llm: str
    lora: Lora = dataclasses.field(default_factory=Lora)
    dropout: float = 0.1
    freeze: bool = False
    max_len: int | None = None
    sizes: tuple[int, ...] = (1, 2)
    extra: dict = dataclasses.field(default_factory=dict)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def conf(tmp_path) -> Path:
    write(tmp_path / "base.yaml", "model:\n  llm: random:llama-debug\n  lora:\n    rank: 4\n"
                                  "optim:\n  lr: 1e-3\n  betas: [0.9, 0.95]\n")
    return write(tmp_path / "exp.yaml", "include: base.yaml\nmodel:\n  lora:\n    alpha: 32\n"
                                        "  freeze: true\n")


def test_include_merges_key_by_key_and_reads_exponent_floats(conf):
    cfg = load_config(conf)
    assert cfg["model"] == {"llm": "random:llama-debug", "lora": {"rank": 4, "alpha": 32},
                            "freeze": True}
    assert cfg["optim"]["lr"] == 0.001 and isinstance(cfg["optim"]["lr"], float)
    assert "include" not in cfg


def test_include_list_later_wins_and_cycles_are_errors(tmp_path):
    write(tmp_path / "a.yaml", "x: 1\ny: a\n")
    write(tmp_path / "b.yaml", "x: 2\n")
    both = write(tmp_path / "c.yaml", "include: [a.yaml, b.yaml]\nz: 3\n")
    assert load_config(both) == {"x": 2, "y": "a", "z": 3}
    write(tmp_path / "loop1.yaml", "include: loop2.yaml\n")
    write(tmp_path / "loop2.yaml", "include: loop1.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(tmp_path / "loop1.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(write(tmp_path / "d.yaml", "include: missing.yaml\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path / "e.yaml", "- 1\n- 2\n"))


def test_config_files_lists_includes_in_any_yaml_form(tmp_path, capsys):
    """What a recipe stage hashes: the config and its includes, depth first, spelt as
    ``<dir of the including file>/<name>``; a block-style list counts like a flow one."""
    from dualspeech.bin import resolve_config

    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", "x: 1\n")
    write(tmp_path / "sub" / "b.yaml", "include: ../a.yaml\ny: 2\n")
    top = write(tmp_path / "c.yaml", "# a comment\ninclude:\n  - sub/b.yaml\n  - 'a.yaml'\nz: 3\n")
    d = str(tmp_path)
    assert config_files(top) == [f"{d}/c.yaml", f"{d}/sub/b.yaml", f"{d}/sub/../a.yaml", f"{d}/a.yaml"]
    resolve_config.main([str(top), "--files"])
    assert capsys.readouterr().out.split() == config_files(top)
    with pytest.raises(SystemExit, match="config file not found"):
        resolve_config.main([str(write(tmp_path / "d.yaml", "include: missing.yaml\n")), "--files"])


def test_resolve_config_choices_are_the_decode_controls(capsys):
    from dualspeech.bin import resolve_config
    from dualspeech.inference.config import CONTROLS

    resolve_config.main(["--choices", "decode.control"])
    assert tuple(capsys.readouterr().out.split()) == CONTROLS
    with pytest.raises(SystemExit, match="known keys are decode.control"):
        resolve_config.main(["--choices", "decode.nope"])
    with pytest.raises(SystemExit, match="need the config file"):
        resolve_config.main(["--files"])


def test_overrides_parse_yaml_values(conf):
    cfg = load_config(conf, ["model.lora.rank=16", "optim.lr=5e-4", "model.freeze=false",
                             "optim.betas=[0.8, 0.9]", "model.lora.alpha=8"])
    assert cfg["model"]["lora"]["rank"] == 16
    assert cfg["optim"]["lr"] == 5e-4
    assert cfg["model"]["freeze"] is False
    assert cfg["optim"]["betas"] == [0.8, 0.9]
    assert cfg["model"]["lora"]["alpha"] == 8


@pytest.mark.parametrize("override, message", [
    ("model.lora.rnak=16", "unknown config key 'model.lora.rnak'; known keys here: alpha, rank"),
    ("modle.llm=x", "unknown config key 'modle'"),
    ("model.lora.rank=abc", "expected int like the current value 4"),
    ("model.lora.rank=1.5", "expected int"),
    ("model.freeze=1", "expected bool"),
    ("model.llm.name=x", "unknown config key 'model.llm'"),
    ("model.lora.rank", "must look like dotted.key=value"),
    ("=3", "empty key"),
])
def test_bad_overrides_name_the_dotted_key(conf, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(conf, [override])


def test_float_override_accepts_int(conf):
    cfg = load_config(conf, ["optim.lr=1"])
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)


def test_build_gives_typed_nested_dataclasses(conf):
    cfg = load_config(conf)
    cfg["model"]["max_len"] = 128
    model = build(Model, cfg["model"], where="model")
    assert model == Model(llm="random:llama-debug", lora=Lora(rank=4, alpha=32.0), freeze=True,
                          max_len=128)
    assert isinstance(model.lora.alpha, float)
    assert build(Model, {"llm": "x", "sizes": [3, 4]}).sizes == (3, 4)
    assert build(Model, {"llm": "x", "max_len": None}).max_len is None
    assert build(Lora, None) == Lora()


@pytest.mark.parametrize("section, message", [
    ({"llm": "x", "lora": {"rnak": 2}}, r"model.lora: unknown key\(s\) \['rnak'\]"),
    ({"llm": "x", "dropuot": 0.2}, r"model: unknown key\(s\) \['dropuot'\]"),
    ({"llm": "x", "dropout": "high"}, "model.dropout: expected float, got 'high'"),
    ({"llm": "x", "freeze": "yes please"}, "model.freeze: expected true/false"),
    ({"llm": "x", "lora": {"rank": True}}, "model.lora.rank: expected int, got True"),
    ({"llm": "x", "lora": {"targets": "q_proj"}}, "model.lora.targets: expected a list"),
    ({"llm": "x", "lora": {"targets": ["q", 3]}}, r"model.lora.targets\[1\]: expected str"),
    ({"llm": "x", "max_len": "long"}, "model.max_len: expected int"),
    ({"llm": "x", "extra": [1]}, "model.extra: expected a mapping"),
    ({"llm": "x", "lora": 4}, "model.lora: expected a mapping"),
    ({"lora": {"rank": 2}}, "missing 1 required positional argument: 'llm'"),
])
def test_build_rejects_bad_sections_with_dotted_path(section, message):
    with pytest.raises(ConfigError, match=message):
        build(Model, section, where="model")


def test_command_line_and_saved_config_round_trip(conf, tmp_path):
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(["--conf", str(conf), "--set", "model.lora.rank=2",
                              "--set", "optim.lr=2e-5"])
    cfg = config_from_args(args)
    saved = save_config(cfg, tmp_path / "exp" / "run1")
    assert saved == tmp_path / "exp" / "run1" / "config.yaml"
    assert yaml.safe_load(saved.read_text()) == cfg
    assert load_config(saved) == cfg  # the saved config reproduces the run on its own
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --conf is required


def test_plus_override_adds_a_key_that_build_then_validates():
    from dualspeech.config import apply_overrides

    cfg = {"model": {"llm": "x"}}
    with pytest.raises(ConfigError, match=r"write --set \+model.lora.rank=VALUE"):
        apply_overrides(cfg, ["model.lora.rank=8"])
    assert apply_overrides(cfg, ["+model.lora.rank=8"])["model"]["lora"] == {"rank": 8}
