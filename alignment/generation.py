"""Batched sampling of function bodies from a local Hugging Face causal LM (sample, eval, PPO rollouts).

A completion continues a prompt that ends inside a function (signature + docstring); it ends at the end of
the function body: the first non-blank line that starts at column 0 (a dedent), or a stop token, or
``max_new_tokens``. The returned text stops before that dedented line, so ``prompt + completion`` is the
program under test. A prompt given as chat messages is rendered with the model's chat template and its answer
ends at a stop token or ``max_new_tokens`` only (prose and fenced code; :func:`codealign.tasks.chat.program`
takes the code out). Prompt ids, BOS and stop tokens follow :mod:`alignment.tokenization`, as training does.

The n samples of a prompt share one prefill: each distinct prompt of a batch is run through the model once
and its KV cache copied to its rows (:func:`_prefill_shared_prompts`); ``generate`` then continues from the
cache. For every architecture ``tests/test_zoo_sampler.py`` checks this against plain ``model.generate``:
identical tokens under greedy decoding and under seeded sampling, and first-token frequencies that match the
model's distribution. Models that cannot take a ``DynamicCache`` (recurrent/stateful ones) skip the sharing.

Guarantees: the same model, prompts, ``n``, ``temperature``, ``top_p``, ``max_new_tokens``, ``seed`` and
``batch_size`` on the same machine give the same completions. Non-guarantees: results change with
``batch_size`` (padding and the order of random draws), across torch versions and across devices.

Example::

    from alignment.generation import generate
    completions = generate("runs/quickstart/sft", prompts, n=8, temperature=0.8, seed=0)
    completions[0][3]  # 4th sample for the first prompt
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codealign.errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    """How completions are drawn: the one set of sampling defaults (``sample``, ``eval``, the quickstart, and
    :func:`generate`'s keyword defaults are these). ``temperature=0`` is greedy."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }

    @classmethod
    def greedy(cls, max_new_tokens: int | None = None) -> SamplingParams:
        return cls(temperature=0.0, max_new_tokens=max_new_tokens or cls.max_new_tokens)

    def stored(self, policy_run_id: int | None = None) -> dict[str, Any]:
        """What a Completion row records: the parameters, plus the training run of the weights sampled."""
        return {**self.as_dict(), **({"policy_run_id": policy_run_id} if policy_run_id is not None else {})}

    def key_for(self, policy_run_id: int | None = None) -> str:
        return hashlib.sha256(json.dumps(self.stored(policy_run_id), sort_keys=True).encode()).hexdigest()[
            :16
        ]

    @property
    def key(self) -> str:
        return self.key_for(None)


@dataclass(frozen=True)
class SampledCompletion:
    """One sampled completion. ``token_ids`` are the completion's tokens up to the cut (EOS included if it
    ended on EOS); ``finished`` is False when ``max_new_tokens`` ran out before the body ended."""

    text: str
    token_ids: list[int]
    finished: bool


def end_of_body(text: str) -> int | None:
    """Index where the function body in ``text`` ends (start of the first dedented line), or None."""
    pos = 0
    while True:
        if pos < len(text) and not text[pos].isspace():
            return pos
        newline = text.find("\n", pos)
        if newline < 0:
            return None
        pos = newline + 1


def truncate_at_dedent(text: str) -> str:
    cut = end_of_body(text)
    return text if cut is None else text[:cut]


def load_policy(policy: str | Path | tuple[Any, Any]) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a model directory, or the pair itself. The tokenizer pads on the left."""
    if isinstance(policy, tuple):
        model, tokenizer = policy
    else:
        from transformers import AutoModelForCausalLM

        from alignment.tokenization import load_tokenizer

        tokenizer = load_tokenizer(policy, "policy")  # checked against tokenizer.json; pad = EOS if none
        try:
            model = AutoModelForCausalLM.from_pretrained(policy)
        except (OSError, ValueError) as exc:  # corrupt or incomplete files; transformers' text is many lines
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load the model in {policy}: {first}") from None
        model = model.to(_sampling_device())
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # user models (CodeLlama) may ship without a pad token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _sampling_device() -> str:
    """The GPU of this process when there is one (``LOCAL_RANK`` under accelerate), else the CPU: ``sample`` and
    ``eval --policy`` of a real checkpoint on a GPU node must not run on its CPU cores."""
    import os

    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"


def _dedent_stopper(tokenizer, prompt_len: int, code_rows: list[bool] | None = None):
    """Stops a row once its text has left the function body; rows marked False (chat answers) never stop here."""
    import torch
    from transformers import StoppingCriteria

    class StopAtDedent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = [end_of_body(t) is not None for t in texts]
            if code_rows is not None:
                done = [d and code for d, code in zip(done, code_rows)]
            return torch.tensor(done, device=input_ids.device)

    return StopAtDedent()


def shares_prefix(model) -> bool:
    """Whether a prompt's KV cache can be computed once and copied to its samples: a ``DynamicCache`` model
    (transformers' own test, which excludes recurrent and custom-cache architectures) that is not stateful."""
    supports = getattr(model, "_supports_default_dynamic_cache", None)
    return bool(supports and supports()) and not getattr(model, "_is_stateful", False)


def _left_pad(rows: list[list[int]], pad_id: int, device):
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        if row:
            ids[r, width - len(row) :] = torch.tensor(row)
            mask[r, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _prefill_shared_prompts(model, pad_id: int, batch_ids: list[list[int]]):
    """Left-padded ``input_ids``/``attention_mask`` for ``batch_ids`` and a KV cache of all but their last token.

    A batch holds the n samples of each prompt side by side, so the prompt is run through the model once per
    distinct prompt and its cache copied to the n rows (prompts are ~2/3 of a basic sequence: prefill was a
    quarter of eval time). ``generate`` then feeds only the last prompt token. Positions count real tokens
    only, as ``generate`` numbers them, so the cached keys line up with the generated ones (absolute position
    embeddings such as GPT-2's included). The cache is the one ``generate`` would build for this model
    (``DynamicCache(config=...)``: sliding-window layers keep only their window). ``cache`` is None for a
    model that cannot share it (:func:`shares_prefix`); ``generate`` then prefills every row itself.
    """
    import torch

    keys = [tuple(ids) for ids in batch_ids]
    row_of = {key: row for row, key in enumerate(dict.fromkeys(keys))}
    input_ids, attention_mask = _left_pad([list(k) for k in row_of], pad_id, model.device)
    rows = torch.tensor([row_of[k] for k in keys], device=model.device)
    if not shares_prefix(model):
        return input_ids[rows], attention_mask[rows], None
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if input_ids.shape[1] > 1:
        mask = attention_mask[:, :-1]
        model(
            input_ids=input_ids[:, :-1],
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            cache=cache,
            use_cache=True,
        )
    cache.batch_select_indices(rows)
    return input_ids[rows], attention_mask[rows], cache


def _cut_tokens(
    tokenizer, ids: list[int], text: str, stops: int | list[int] | None, code: bool = True
) -> tuple[str, list[int], bool]:
    """Completion text and tokens up to the first stop token, then (code answers) the end of the body."""
    stop_set = {stops} if isinstance(stops, int) else set(stops or ())
    first_stop = next((k for k, t in enumerate(ids) if t in stop_set), None)
    if first_stop is not None:
        ids = ids[: first_stop + 1]
        ended = True
        text = tokenizer.decode(ids, skip_special_tokens=True)
    else:
        ended = False
    cut = end_of_body(text) if code else None
    if cut is None:
        return text, ids, ended
    text = text[:cut]
    lo, hi = 0, len(ids)  # fewest tokens whose decoded text covers the kept text
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[: mid + 1], skip_special_tokens=True)) >= len(text):
            hi = mid
        else:
            lo = mid + 1
    return text, ids[: lo + 1] if text else [], True


def generate_rollouts(
    policy: str | Path | tuple[Any, Any],
    prompts: list[str] | list[list[dict]],
    n: int = 1,
    temperature: float = SamplingParams.temperature,
    top_p: float = SamplingParams.top_p,
    max_new_tokens: int = SamplingParams.max_new_tokens,
    seed: int = SamplingParams.seed,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[SampledCompletion]]:
    """``n`` rollouts per prompt (``result[i][j]``: sample j of prompt i). ``temperature=0`` is greedy.

    A prompt is code to continue (a string) or a conversation (a list of ``{"role", "content"}`` messages).
    ``on_batch(count)`` is called after each generate call with the number of sequences it produced (progress
    bars); it does not change what is sampled."""
    import torch

    from alignment.tokenization import check_chat_stops, prompt_ids, stop_token_ids
    from codealign.tasks.chat import is_conversation

    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("n, batch_size and max_new_tokens must be positive")
    model, tokenizer = load_policy(policy)
    was_training = model.training
    model.eval()
    stops = stop_token_ids(tokenizer, model.generation_config)
    code = [not is_conversation(p) for p in prompts]
    if not all(code):
        check_chat_stops(tokenizer, stops, "policy")
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    # Similar lengths batched together waste less padding; the order is a pure function of the inputs.
    jobs = sorted(
        ((i, j) for i in range(len(prompts)) for j in range(n)), key=lambda ij: (len(encoded[ij[0]]), ij)
    )
    results: list[list[SampledCompletion | None]] = [[None] * n for _ in prompts]
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    try:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            with torch.inference_mode():
                input_ids, attention_mask, cache = _prefill_shared_prompts(
                    model, tokenizer.pad_token_id, [encoded[i] for i, _ in batch]
                )
                prompt_len = input_ids.shape[1]
                torch.manual_seed(seed + start)
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    **({"cache": cache} if cache is not None else {}),
                    max_new_tokens=max_new_tokens,
                    **sampling,
                    stopping_criteria=[_dedent_stopper(tokenizer, prompt_len, [code[i] for i, _ in batch])],
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stops,
                )
            new_ids = out[:, prompt_len:].tolist()
            texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
            for (i, j), ids, text in zip(batch, new_ids, texts):
                ids = [t for t in ids if t != tokenizer.pad_token_id or t in stops]
                results[i][j] = SampledCompletion(*_cut_tokens(tokenizer, ids, text, stops, code[i]))
            if on_batch is not None:
                on_batch(len(batch))
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def generate(
    policy: str | Path | tuple[Any, Any],
    prompts: list[str],
    n: int = 1,
    temperature: float = SamplingParams.temperature,
    top_p: float = SamplingParams.top_p,
    max_new_tokens: int = SamplingParams.max_new_tokens,
    seed: int = SamplingParams.seed,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """``n`` completion texts per prompt; see :func:`generate_rollouts` and the module docstring."""
    rollouts = generate_rollouts(
        policy, prompts, n, temperature, top_p, max_new_tokens, seed, batch_size, on_batch
    )
    return [[r.text for r in per_prompt] for per_prompt in rollouts]
