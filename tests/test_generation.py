"""Batched sampling: end-of-body cut, determinism by seed, shapes, greedy, token bookkeeping."""

from __future__ import annotations

import pytest

from alignment.generation import (
    _cut_tokens,
    end_of_body,
    generate,
    generate_rollouts,
    load_policy,
    truncate_at_dedent,
)

PROMPTS = [
    'def num_add(x: int) -> int:\n    """Given an integer x: add 3. Return the result."""\n',
    'def text_upper(s: str) -> str:\n    """Given a string s: convert it to upper case. Return the result."""\n',
    "def f(n: int) -> int:\n",
]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(tiny_model_dir)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("    x = x + 3\n    return x\ndef g():\n    pass\n", "    x = x + 3\n    return x\n"),
        (
            "    if x:\n        y = 1\n\n    return y\n\nprint(1)",
            "    if x:\n        y = 1\n\n    return y\n\n",
        ),
        ("def g():\n", ""),
        ("    return x", "    return x"),
        ("    return x\n", "    return x\n"),
        ("", ""),
    ],
)
def test_truncate_at_dedent(text, kept):
    assert truncate_at_dedent(text) == kept
    assert (end_of_body(text) is None) == (kept == text and not text.startswith("def"))


def test_cut_tokens_keeps_the_body_tokens_only(policy):
    _, tok = policy
    body = "    x = x + 3\n    return x\n"
    ids = tok(body + "def g():\n    pass", add_special_tokens=False)["input_ids"]
    text, kept_ids, finished = _cut_tokens(tok, ids, tok.decode(ids), tok.eos_token_id)
    assert (text, finished) == (body, True)
    assert tok.decode(kept_ids) == body

    eos_ids = tok("    return x", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id,
        tok.pad_token_id,
    ]
    text, kept_ids, finished = _cut_tokens(
        tok, eos_ids, tok.decode(eos_ids, skip_special_tokens=True), tok.eos_token_id
    )
    assert (text, finished, kept_ids[-1]) == ("    return x", True, tok.eos_token_id)

    open_ids = tok("    return", add_special_tokens=False)["input_ids"]
    assert _cut_tokens(tok, open_ids, "    return", tok.eos_token_id) == ("    return", open_ids, False)


def test_shapes_and_determinism(policy):
    kwargs = {"n": 3, "temperature": 1.0, "max_new_tokens": 12, "batch_size": 4}
    first = generate_rollouts(policy, PROMPTS, seed=7, **kwargs)
    assert [len(per_prompt) for per_prompt in first] == [3, 3, 3]
    assert generate_rollouts(policy, PROMPTS, seed=7, **kwargs) == first
    other = generate_rollouts(policy, PROMPTS, seed=8, **kwargs)
    assert [[r.text for r in p] for p in other] != [[r.text for r in p] for p in first]
    _, tok = policy
    for per_prompt in first:
        for rollout in per_prompt:
            assert len(rollout.token_ids) <= 12
            assert end_of_body(rollout.text) is None  # nothing after the end of the body survives
            assert tok.decode(rollout.token_ids, skip_special_tokens=True) == rollout.text
            assert rollout.finished or len(rollout.token_ids) == 12


def test_greedy_samples_agree_and_texts_match_rollouts(policy):
    texts = generate(policy, PROMPTS[:2], n=2, temperature=0.0, max_new_tokens=8, batch_size=3)
    assert all(a == b for a, b in texts)
    rollouts = generate_rollouts(policy, PROMPTS[:2], n=2, temperature=0.0, max_new_tokens=8, batch_size=3)
    assert texts == [[r.text for r in p] for p in rollouts]


def test_model_left_in_its_training_mode(policy):
    model, _ = policy
    model.train()
    generate(policy, PROMPTS[:1], n=1, max_new_tokens=2)
    assert model.training
    with pytest.raises(ValueError, match="positive"):
        generate(policy, PROMPTS[:1], n=0)


def test_progress_callback_counts_every_generate_call_and_changes_nothing(policy):
    """`codealign sample` advances its bar from this, batch by batch (it used to sit at 0 until the end)."""
    calls: list[int] = []
    seen = generate(policy, PROMPTS, n=2, max_new_tokens=4, batch_size=4, on_batch=calls.append)
    assert calls == [4, 2]
    assert seen == generate(policy, PROMPTS, n=2, max_new_tokens=4, batch_size=4)
