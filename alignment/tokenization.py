"""Prompts and answers to token ids, the same way for every checkpoint and every stage.

What differs between Hugging Face checkpoints — pad token, BOS, chat template, stop tokens — is read from the
checkpoint here, once, and every stage uses these functions: the sampler (``alignment.generation``), SFT, the
reward model (training and scoring), DPO and PPO. GRPO hands prompts to TRL, which follows the same rules
(tokenizer default for text, ``apply_chat_template(add_generation_prompt=True)`` for messages, stops = EOS +
``generation_config.eos_token_id``).

* **Tokenizer**: :func:`load_tokenizer` loads with ``AutoTokenizer`` and checks the result against the
  directory's own ``tokenizer.json``: transformers 5 picks the class from ``config.json``'s ``model_type`` for some
  families (``qwen2``, ``phi3``, ...) and rebuilds the tokenizer from vocab + merges with that family's
  pre-tokenizer, dropping a BOS post-processor and adding a pad token that may not be in the vocabulary. When
  the ids differ, the shipped ``tokenizer.json`` is loaded as is. No pad token: EOS pads (as TRL does).
* **BOS**: a text prompt starts with BOS exactly when the tokenizer adds one by default
  (:func:`adds_bos`, from its post-processor) — what the model was pre-trained with and what TRL's GRPO feeds.
  A chat prompt is the chat template's text, tokenized without adding anything (the template writes BOS
  if the family uses one). Answers never get BOS.
* **Prompt and answer apart**: prompt ids, then answer ids tokenized on their own (a Python-aware BPE merges
  the prompt's last newline with the body's indentation; jointly tokenized data would never show the
  boundary generation starts from). A text answer ends with EOS; a chat answer is the template's assistant
  turn after the generation prompt (its end-of-turn token included).
* **Stops**: EOS plus ``generation_config.eos_token_id`` (TRL's rule). A chat template that ends the assistant's
  turn with a special token that is not among them is a one-line error naming ``eos_token_id``.
* **Custom code**: a checkpoint whose model or tokenizer class transformers does not ship (``auto_map`` to
  Python files in the directory) is refused with a one-line error naming ``trust_remote_code``: codealign never
  runs a checkpoint's own code. One that maps custom code but also names a built-in ``model_type`` (older
  Phi-3 and Qwen2 uploads) loads with transformers' class, as ``from_pretrained`` does by default.

No torch import at module level.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from codealign.errors import UserError
from codealign.tasks.chat import is_conversation, reply_text

log = logging.getLogger(__name__)

# Code, a special-looking string and non-ASCII text: enough to tell two tokenizers apart.
_PROBE = 'def f(x: int) -> int:\n    """Add 3 <s>."""\n    return x + 3  # é\n\n\nprint(f(1))\n'
_REPLY_MARK = "\x00codealign-reply\x00"


def load_tokenizer(path: str | Path, what: str = "model_name_or_path"):
    """The checkpoint's tokenizer, tokenizing as its ``tokenizer.json`` does, with a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    check_no_remote_code(path, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{what}: cannot load a tokenizer from {path} ({first})") from None
    tokenizer = _as_shipped(tokenizer, Path(path), what)
    if tokenizer.eos_token is None:
        raise UserError(
            f"{what}: the tokenizer in {path} has no EOS token (set eos_token in tokenizer_config.json)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_no_remote_code(path: str | Path, what: str = "model_name_or_path") -> None:
    """A one-line error when loading ``path`` would need ``trust_remote_code=True`` (see the module docstring)."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    def read(name: str) -> dict:
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    config, tok_config = read("config.json"), read("tokenizer_config.json")
    custom = None
    if config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING:
        custom = f"config.json's model_type {config.get('model_type')!r}"
    tok_class = tok_config.get("tokenizer_class")
    if (
        tok_config.get("auto_map")
        and tok_class
        and not any(
            hasattr(transformers, c) for c in (tok_class, tok_class.removesuffix("Fast"), f"{tok_class}Fast")
        )
    ):
        custom = f"tokenizer_config.json's tokenizer_class {tok_class!r}"
    if custom:
        raise UserError(
            f"{what}: {path} needs its own Python code ({custom} is not built into transformers); codealign does "
            "not set trust_remote_code — convert the checkpoint to a built-in architecture"
        )


def _as_shipped(tokenizer, path: Path, what: str):
    """``tokenizer``, or the directory's ``tokenizer.json`` loaded as is when transformers' class differs."""
    shipped = path / "tokenizer.json"
    if not shipped.is_file():
        return tokenizer
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(shipped))
    if _agrees(tokenizer, raw):
        return tokenizer
    exact = PreTrainedTokenizerFast.from_pretrained(path)
    if not _agrees(exact, raw):
        raise UserError(f"{what}: the tokenizer in {path} does not tokenize as its tokenizer.json does")
    log.warning(
        "%s: transformers' %s tokenizes differently from %s; using tokenizer.json as shipped",
        what,
        type(tokenizer).__name__,
        shipped,
    )
    return exact


def _agrees(tokenizer, raw) -> bool:
    return tokenizer(_PROBE)["input_ids"] == raw.encode(_PROBE).ids and len(tokenizer) == raw.get_vocab_size(
        with_added_tokens=True
    )


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of a text by default (a post-processor such as Llama's)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    return tokenizer("x")["input_ids"][:1] == [bos] and tokenizer("x", add_special_tokens=False)["input_ids"][
        :1
    ] != [bos]


def _template(tokenizer, messages: list[dict], **kwargs) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"chat task: the tokenizer of {tokenizer.name_or_path} has no chat template "
            "(set chat_template in tokenizer_config.json, or use completion-format tasks)"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def prompt_text(tokenizer, prompt: str | list[dict]) -> str:
    """What the model reads before answering: the text itself, or the rendered chat with the generation prompt."""
    if is_conversation(prompt):
        return _template(tokenizer, prompt, add_generation_prompt=True)
    return prompt


def prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    """The ids the model is fed before its answer (sampler, SFT, DPO, reward model, PPO alike)."""
    ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    if not is_conversation(prompt) and adds_bos(tokenizer):
        return [tokenizer.bos_token_id, *ids]
    return ids


def answer_text(tokenizer, prompt: str | list[dict], answer: Any) -> str:
    """The text a policy is trained to produce after ``prompt``: the answer (a text prompt), or the chat
    template's assistant turn (a conversation), end-of-turn marker included. EOS is not in a text answer's text."""
    if not is_conversation(prompt):
        return reply_text(answer)
    head = prompt_text(tokenizer, prompt)
    full = _template(tokenizer, [*prompt, {"role": "assistant", "content": reply_text(answer)}])
    if not full.startswith(head):
        raise UserError(
            f"chat task: the chat template of {tokenizer.name_or_path} does not render the conversation as the "
            "prompt (with add_generation_prompt) followed by the answer"
        )
    return full[len(head) :]


def answer_ids(tokenizer, prompt: str | list[dict], answer: Any) -> list[int]:
    """The answer's ids, tokenized apart from the prompt; a text answer ends with EOS."""
    ids = tokenizer(answer_text(tokenizer, prompt, answer), add_special_tokens=False)["input_ids"]
    return ids if is_conversation(prompt) else [*ids, tokenizer.eos_token_id]


def sequence_ids(tokenizer, prompt: str | list[dict], answer: Any) -> list[int]:
    """Prompt then answer, as a reward model reads a completed program (training and scoring alike)."""
    return prompt_ids(tokenizer, prompt) + answer_ids(tokenizer, prompt, answer)


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """EOS, then ``generation_config.eos_token_id`` (an int or a list): where an answer ends."""
    stops = [tokenizer.eos_token_id]
    extra = getattr(generation_config, "eos_token_id", None)
    for token in extra if isinstance(extra, (list, tuple)) else [extra]:
        if token is not None and token not in stops:
            stops.append(int(token))
    return stops


def check_chat_stops(tokenizer, stops: list[int], where: str) -> None:
    """A one-line error when the chat template ends the assistant's turn with a special token that is not a
    stop token (the answer would run to the token limit)."""
    probe = [{"role": "user", "content": "hi"}]
    suffix = answer_text(tokenizer, probe, _REPLY_MARK).split(_REPLY_MARK, 1)[-1]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if getattr(t, "special", False)
    }
    ends = [i for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in special]
    if ends and ends[0] not in stops:
        token = tokenizer.convert_ids_to_tokens(ends[0])
        raise UserError(
            f"{where}: the chat template ends the assistant's turn with {token!r} (id {ends[0]}), which is not a "
            f"stop token; add {ends[0]} to eos_token_id in generation_config.json"
        )


def check_chat_checkpoint(tokenizer, path: str | Path, where: str = "model_name_or_path") -> None:
    """Before training on chat data: a template is there and its end of turn stops generation."""
    check_chat_stops(tokenizer, stop_token_ids(tokenizer, generation_config_of(path)), where)


def generation_config_of(path: str | Path):
    """The directory's ``generation_config.json`` (None when it has none or it does not parse)."""
    file = Path(path) / "generation_config.json"
    if not file.is_file():
        return None
    from transformers import GenerationConfig

    try:
        json.loads(file.read_text(encoding="utf-8"))
        return GenerationConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None
