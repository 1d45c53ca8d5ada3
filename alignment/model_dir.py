"""Is this directory a Hugging Face model codealign can load? Checked before anything is registered.

A directory that only looks like a model (a ``config.json`` and nothing else, a half-copied checkpoint) used to
fail deep inside ``from_pretrained`` with a multi-line traceback, after the policy row had been written. Every
entry point that takes a model directory (``train``'s ``model_name_or_path``, ``sample``/``eval --policy``)
calls :func:`check_model_dir` first, so the user gets one line naming the missing piece and the DB gets
nothing. File checks only: no torch or transformers import.
"""

from __future__ import annotations

import json
from pathlib import Path

from codealign.errors import UserError

# The weight files transformers' from_pretrained looks for (transformers.utils SAFE_WEIGHTS_NAME & co.).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_model_dir(path: str | Path, what: str, *, tokenizer: bool = True) -> Path:
    """``path`` as a Path when it holds a loadable model; a one-line :class:`UserError` naming ``what`` else."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise UserError(f"{what}: {path} is not a directory (a local Hugging Face model is needed)")
    config = directory / "config.json"
    if not config.is_file():
        raise UserError(f"{what}: no Hugging Face model (config.json) in {path}")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        raise UserError(f"{what}: {config} is not a JSON object") from None
    if not model_type:
        raise UserError(f"{what}: {config} has no model_type")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"{what}: no model weights in {path} (expected {' or '.join(WEIGHT_FILES[::2])})")
    if tokenizer and not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{what}: no tokenizer in {path} (expected {' or '.join(TOKENIZER_FILES)})")
    return directory
