"""The shared-prefix sampler (alignment/generation.py) against plain ``model.generate``, on every zoo model.

The sampler prefills each distinct prompt once and copies its KV cache to the prompt's n rows; ``generate``
then continues from that cache. Proven here for every architecture of tests/zoo.py (sliding window, absolute
positions, fused qkv, partial rotary ...):

* greedy: the same tokens as ``model.generate`` on the prompt alone, tokenized the way Hugging Face does by
  default (BOS from the tokenizer, the chat template for messages);
* seeded sampling: the same tokens as ``model.generate`` on the same padded batch with the same seed;
* the distribution: first-token frequencies over many draws match the model's own next-token distribution
  (``generate``'s processed scores: temperature, top-k from generation_config, top-p), by a chi-square test
  with a fixed seed (deterministic, so never flaky; a wrong cache, position or mask moves the distribution
  far beyond the threshold — checked by breaking the prefill on purpose).
"""

from __future__ import annotations

import pytest
import torch
from zoo import ZOO, chat_task_rows, one_torch_thread, task_rows

from alignment import generation
from alignment.generation import (
    _cut_tokens,
    _dedent_stopper,
    _left_pad,
    _prefill_shared_prompts,
    generate_rollouts,
    load_policy,
)
from alignment.tokenization import prompt_ids, stop_token_ids

MAX_NEW = 16
# Code prompts (a random model often leaves the body at once: the cut is compared too) and chat prompts (no
# body cut: answers run to a stop token or the limit), of different lengths, so the batch is padded.
PROMPTS = [
    task_rows()[0]["prompt"],
    chat_task_rows()[1]["messages"],
    task_rows()[3]["prompt"] + "    s = s",
    chat_task_rows()[4]["messages"][1:],
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_policy(request, zoo_models):
    model, tokenizer = load_policy(str(zoo_models.path(request.param)))
    return request.param, model.eval(), tokenizer


def _hf_prompt(tokenizer, prompt) -> list[int]:
    """The prompt as Hugging Face tokenizes it by default (what a user's own generate call would feed)."""
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]


def _plain_generate(
    model, tokenizer, rows: list[list[int]], codes: list[bool], **sampling
) -> list[list[int]]:
    input_ids, attention_mask = _left_pad(rows, tokenizer.pad_token_id, model.device)
    width = input_ids.shape[1]
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=MAX_NEW,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(tokenizer, model.generation_config),
        stopping_criteria=[_dedent_stopper(tokenizer, width, codes)],
        **sampling,
    )
    return out[:, width:].tolist()


def _cut(tokenizer, model, ids: list[int], code: bool):
    stops = stop_token_ids(tokenizer, model.generation_config)
    ids = [t for t in ids if t != tokenizer.pad_token_id or t in stops]
    return _cut_tokens(tokenizer, ids, tokenizer.decode(ids, skip_special_tokens=True), stops, code)


def test_prompt_ids_are_huggingface_defaults(zoo_policy):
    """BOS where the tokenizer adds it, the chat template's own text for messages: as TRL and a user would."""
    _, _, tokenizer = zoo_policy
    for prompt in PROMPTS:
        assert prompt_ids(tokenizer, prompt) == _hf_prompt(tokenizer, prompt)
    assert prompt_ids(tokenizer, PROMPTS[0])[0] == tokenizer.bos_token_id  # every zoo tokenizer adds BOS


def test_shared_prefill_gives_the_logits_of_a_plain_forward(zoo_policy):
    """The sampler's cache (one prefill per distinct prompt, copied to its rows, left-padded) and generate's
    next steps give each row the logits ``generate`` computes for that prompt alone — to float tolerance, so a
    position off by one under rotary embeddings (which barely moves a random model's argmax) still fails."""
    name, model, tokenizer = zoo_policy
    rows = [prompt_ids(tokenizer, p) for p in PROMPTS for _ in range(2)]
    steps = 4

    def logits(input_ids, attention_mask, **extra):
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
        return torch.stack(out.logits, 1)  # (rows, steps, vocab)

    with torch.inference_mode():
        input_ids, attention_mask, cache = _prefill_shared_prompts(model, tokenizer.pad_token_id, rows)
        assert cache is not None
        shared = logits(input_ids, attention_mask, cache=cache)
        for r, row in enumerate(rows):
            ids = torch.tensor([row], device=model.device)
            alone = logits(ids, torch.ones_like(ids))[0]
            torch.testing.assert_close(shared[r], alone, atol=2e-4, rtol=1e-4, msg=f"{name} row {r}")


def test_greedy_matches_plain_generate(zoo_policy):
    name, model, tokenizer = zoo_policy
    ours = generate_rollouts(
        (model, tokenizer), PROMPTS, n=2, temperature=0, max_new_tokens=MAX_NEW, batch_size=8
    )
    lengths = []
    for prompt, samples in zip(PROMPTS, ours):
        code = isinstance(prompt, str)
        with torch.inference_mode():
            [ref] = _plain_generate(
                model, tokenizer, [_hf_prompt(tokenizer, prompt)], [code], do_sample=False
            )
        expected = _cut(tokenizer, model, ref, code)
        for sample in samples:
            assert (sample.text, sample.token_ids, sample.finished) == expected, name
        lengths.append(len(samples[0].token_ids))
    assert max(lengths) >= 8, f"{name}: too few tokens to compare ({lengths})"


def test_seeded_sampling_matches_plain_generate(zoo_policy):
    """Same batch, same seed: the cache copied from one prefill per prompt changes no draw."""
    name, model, tokenizer = zoo_policy
    n, seed = 3, 11
    ours = generate_rollouts(
        (model, tokenizer), PROMPTS, n=n, temperature=1.0, top_p=0.9, max_new_tokens=MAX_NEW, seed=seed
    )
    rows = [prompt_ids(tokenizer, p) for p in PROMPTS]
    jobs = sorted(
        ((i, j) for i in range(len(PROMPTS)) for j in range(n)), key=lambda ij: (len(rows[ij[0]]), ij)
    )
    codes = [isinstance(PROMPTS[i], str) for i, _ in jobs]
    with torch.inference_mode():
        torch.manual_seed(seed)  # the sampler seeds batch k with seed + its first job's index; one batch here
        ref = _plain_generate(
            model, tokenizer, [rows[i] for i, _ in jobs], codes, do_sample=True, temperature=1.0, top_p=0.9
        )
    for (i, j), ids, code in zip(jobs, ref, codes):
        got = ours[i][j]
        assert (got.text, got.token_ids, got.finished) == _cut(tokenizer, model, ids, code), (name, i, j)
    assert len({tuple(s.token_ids) for per in ours for s in per}) > len(PROMPTS)  # draws differ


def chi_square_p(observed: dict[int, int], probs: torch.Tensor) -> float:
    """p-value of observed token counts under ``probs``; tokens expected fewer than 5 times are pooled."""
    total = sum(observed.values())
    expected = probs.double() * total
    big = (expected >= 5).nonzero().flatten().tolist()
    obs = [observed.get(t, 0) for t in big]
    exp = [expected[t].item() for t in big]
    rest_obs, rest_exp = total - sum(obs), total - sum(exp)
    if rest_exp >= 1:
        obs.append(rest_obs)
        exp.append(rest_exp)
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    df = len(obs) - 1
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2)).item()


DRAWS = 1500


def test_first_token_frequencies_match_the_model(zoo_policy):
    name, model, tokenizer = zoo_policy
    prompt = PROMPTS[1]  # a chat prompt: its first token is never cut away as leaving a function body
    draws = generate_rollouts(
        (model, tokenizer), [prompt], n=DRAWS, temperature=1.0, max_new_tokens=1, batch_size=DRAWS, seed=0
    )[0]
    counts: dict[int, int] = {}
    for d in draws:
        assert len(d.token_ids) == 1, d
        counts[d.token_ids[0]] = counts.get(d.token_ids[0], 0) + 1
    ids = torch.tensor([_hf_prompt(tokenizer, prompt)], device=model.device)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=1.0,
            max_new_tokens=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
        )
    probs = (
        out.scores[0][0].float().softmax(-1).cpu()
    )  # after temperature / top-k / top-p, as generate samples
    assert all(probs[t] > 0 for t in counts), f"{name}: drew tokens the model cannot sample"
    assert chi_square_p(counts, probs) > 1e-4, name


def test_a_model_without_a_dynamic_cache_is_sampled_without_sharing(zoo_models, monkeypatch):
    """Recurrent / custom-cache models get no copied cache; generate prefills each row and outputs agree."""
    model, tokenizer = load_policy(str(zoo_models.path("llama")))
    shared = generation.generate(
        (model, tokenizer), PROMPTS, n=2, temperature=0, max_new_tokens=MAX_NEW, batch_size=8
    )
    calls = []
    monkeypatch.setattr(generation, "shares_prefix", lambda m: calls.append(m) or False)
    plain = generation.generate(
        (model, tokenizer), PROMPTS, n=2, temperature=0, max_new_tokens=MAX_NEW, batch_size=8
    )
    assert calls and plain == shared
