"""``codealign model init``: the embedded default model, built offline (no hub downloads, ever).

Two steps, both deterministic for a given seed on a given machine:

1. a byte-level BPE tokenizer trained with ``tokenizers`` on the ``basic`` suite's train split plus the Python
   standard-library sources found on this machine (capped for speed). A Python-aware pre-tokenizer keeps
   newline+indentation runs, identifiers, numbers and multi-character operators as units, so merges learn
   ``"\\n        "`` or ``" =="`` rather than gluing code across token classes;
2. a small random-init Llama whose sizes come from a preset YAML under ``configs/model/`` (``tiny``: hidden 256,
   4 layers, ~3.6M parameters; ``test``: hidden 64, 2 layers, builds in about a second for unit tests).

The output is a standard Hugging Face directory: ``AutoTokenizer.from_pretrained(dir)`` gives identical token
ids (``tokenizer_config.json`` names ``PreTrainedTokenizerFast`` explicitly, because transformers 5 would
otherwise rebuild a Llama tokenizer from config.json's ``model_type``) and ``AutoModelForCausalLM`` loads the
weights. Non-guarantee: the stdlib corpus differs between Python versions, so tokenizers built on different
machines may differ.

Examples::

    codealign model init --preset tiny --output runs/base
    codealign model init --preset test --output /tmp/m seed=3 hidden_size=96
"""

from __future__ import annotations

import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from codealign.config import load_config, shipped_configs, to_dict
from codealign.errors import UserError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

# Newline + indentation first, then identifiers, 1-3 digit numbers, docstring quotes and multi-char operators,
# then single symbols.
PYTHON_PRETOKENIZE_REGEX = (
    r"\n[ \t]*|[ ]+(?=[ ])|[ ]?[A-Za-z_][A-Za-z0-9_]*|[ ]?[0-9]{1,3}"
    r"|[ ]?(?:\"\"\"|'''|==|!=|<=|>=|//|\*\*|->|\+=|-=|\*=|/=|%=|<<|>>|:=)|[ ]?[^\sA-Za-z0-9_]|\s+"
)


@dataclass
class ModelPreset:
    """Sizes of the embedded model and its tokenizer corpus (one YAML per preset in ``configs/model/``)."""

    vocab_size: int = 2048  # BPE target, special tokens included
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    stdlib_max_bytes: int = 2_000_000  # cap on standard-library source text fed to the tokenizer trainer
    suite_max_tasks: int = 0  # 0: the whole basic train split goes into the tokenizer corpus

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise UserError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.vocab_size < 300:
            raise UserError("vocab_size must be at least 300 (256 byte symbols + specials + merges)")


def available_presets() -> list[str]:
    return sorted(p.stem for p in (shipped_configs() / "model").glob("*.yaml"))


def load_preset(preset: str, overrides: list[str] | None = None) -> ModelPreset:
    """``preset`` is a name under ``configs/model/`` or a path to a YAML file."""
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = shipped_configs() / "model" / f"{preset}.yaml"
        if not path.is_file():
            raise UserError(f"unknown model preset '{preset}' (available: {', '.join(available_presets())})")
    return load_config(ModelPreset, path, overrides)


# ------------------------------------------------------------------------------------------ corpus
def tokenizer_corpus(cfg: ModelPreset, seed: int = 0) -> list[str]:
    """Suite train programs, then stdlib sources (sorted, so the same machine gives the same corpus)."""
    from codealign.tasks.basic import generate_suite

    train = [t for t in generate_suite(seed) if t.split == "train"]
    if cfg.suite_max_tasks:
        train = train[: cfg.suite_max_tasks]
    texts = [t.prompt + (t.reference_solution or "") for t in train]
    budget = cfg.stdlib_max_bytes
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if budget <= 0:
            break
        if "test" in path.parts[-2:-1] or path.name.startswith("test_"):
            continue
        try:
            text = path.read_text(encoding="utf-8")[:budget]
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        budget -= len(text)
    return texts


# --------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str], vocab_size: int):
    """A ``transformers`` fast tokenizer (byte-level BPE, Python-aware splits, bos/eos/pad specials)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PYTHON_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=4096
    )


def save_tokenizer(tokenizer, output_dir: Path) -> None:
    tokenizer.save_pretrained(output_dir)
    config_path = output_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # not the Llama class config.json would imply
    config_path.write_text(json.dumps(config, indent=2) + "\n")


# ------------------------------------------------------------------------------------------- model
def build_model(cfg: ModelPreset, tokenizer, seed: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def init_model(
    output_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    overrides: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train the tokenizer, build the random-init model, save both to ``output_dir``; return the path."""
    cfg = load_preset(preset, overrides)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise UserError(f"output directory is not empty: {output_dir} (pass --overwrite to replace it)")
    output_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(tokenizer_corpus(cfg, seed), cfg.vocab_size)
    model = build_model(cfg, tokenizer, seed)

    save_tokenizer(tokenizer, output_dir)
    model.save_pretrained(output_dir)
    meta = {"preset": preset, "seed": seed, "config": to_dict(cfg), "parameters": model.num_parameters()}
    (output_dir / "codealign_model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return output_dir
