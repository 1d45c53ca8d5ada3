"""The embedded model: offline tokenizer round-trips through AutoTokenizer; the Llama loads and runs."""

from __future__ import annotations

import json

import pytest

from alignment.cli import main
from alignment.model_init import BOS, EOS, PAD, ModelPreset, build_model, init_model, load_preset
from codealign.config import ConfigError

CODE = (
    'def num_add(x: int) -> int:\n    """Add 3 — then return.\n\n    >>> num_add(1)\n    4\n    """\n'
    "    if x % 2 == 0:\n        x = x // 2\n    return {'k': [x ** 2, x != 3]}\n"
)


def test_autotokenizer_round_trip_gives_identical_ids(tiny_model_dir):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = tok(CODE, add_special_tokens=True)["input_ids"]
    assert ids == raw.encode(CODE).ids
    assert tok.decode(ids) == CODE
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    assert config["eos_token_id"] == tok.eos_token_id != config["pad_token_id"] == tok.pad_token_id


def test_tokenizer_is_python_aware(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    pieces = [tok.decode([i]) for i in tok("    x = x // 2\n        return x")["input_ids"]]
    assert "\n        " in pieces  # a newline and its indentation are one token
    assert not any("\n" in p and p.strip() for p in pieces)  # code never glued to a line break
    split = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str('x //= 2 ** y\n\t""" ok')]
    assert split == ["x", "Ġ//", "=", "Ġ2", "Ġ**", "Ġy", "Ċĉ", '"""', "Ġok"]  # byte-level: Ġ space, Ċ newline


def test_model_loads_and_runs(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok(CODE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2


def test_same_seed_same_model(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    again = init_model(tmp_path / "again", preset="test", seed=0)
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()
    a, b = load_file(again / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_tiny_preset_size():
    """~3.6M parameters (docs/pipeline.md); built on the meta device so the test costs nothing."""
    import torch

    cfg = load_preset("tiny")

    class _Vocab:  # what build_model reads from a tokenizer
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return cfg.vocab_size

    with torch.device("meta"):
        model = build_model(cfg, _Vocab(), seed=0)
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (256, 4)
    assert 3.0e6 < model.num_parameters() < 4.5e6


def test_preset_errors(tmp_path):
    with pytest.raises(ConfigError, match="hiden_size.*did you mean 'hidden_size'"):
        load_preset("test", ["hiden_size=32"])
    with pytest.raises(Exception, match="num_attention_heads"):
        ModelPreset(hidden_size=65)


def test_cli_init_and_refuses_non_empty_output(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["model", "init", "--preset", "test", "--output", str(out), "--seed", "1"]) == 0
    assert "parameters) written to" in capsys.readouterr().out
    assert json.loads((out / "codealign_model.json").read_text())["seed"] == 1
    assert main(["model", "init", "--preset", "test", "--output", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["model", "init", "--preset", "nope", "--output", str(tmp_path / "n")]) == 2
    assert "unknown model preset 'nope'" in capsys.readouterr().err
