"""Secondary signals beside pass@k: BLEU and exact match against the reference, perplexity on the reference
(completion tokens only), stored with the eval result and shown in the report."""

from __future__ import annotations

import math

import pytest

from alignment.metrics import format_reference_metrics, normalized, reference_metrics, reference_perplexity
from codealign.tasks.spec import TaskSpec


def task(task_id="t/0", reference="    return x + 1\n", messages=None):
    return TaskSpec(task_id, "def inc(x):\n", "inc", ["assert inc(1) == 2"], reference, messages=messages)


def test_bleu_and_exact_match_against_the_reference():
    a, b = task("t/0"), task("t/1", "    y = x * 2\n    return y\n")
    same = reference_metrics([(a, "    return x + 1   \n\n"), (b, b.reference_solution)])
    assert (
        same["bleu"] == pytest.approx(100.0) and same["exact_match"] == 1.0 and same["reference_samples"] == 2
    )
    assert "tok:13a" in same["bleu_signature"]
    half = reference_metrics([(a, "    return x - 1\n"), (b, b.reference_solution)])
    assert 0 < half["bleu"] < 100 and half["exact_match"] == 0.5
    assert reference_metrics([(a, "    pass\n")])["bleu"] < half["bleu"]


def test_tasks_without_a_reference_are_left_out_and_chat_answers_compare_their_code():
    none = reference_metrics([(task(reference=None), "    return 1\n")])
    assert none == {"bleu": None, "exact_match": None, "reference_samples": 0}
    chat = task(
        reference="```python\ndef inc(x):\n    return x + 1\n```",
        messages=[{"role": "user", "content": "inc"}],
    )
    scored = reference_metrics([(chat, "Here it is:\n```python\ndef inc(x):\n    return x + 1\n```\nDone.")])
    assert scored["exact_match"] == 1.0 and scored["bleu"] == pytest.approx(100.0)
    assert normalized("a  \r\n\n  b\n") == "a\n  b"


def test_perplexity_counts_the_answer_tokens_only_and_padding_changes_nothing(tiny_model_dir):
    import torch

    from alignment.generation import load_policy
    from alignment.tokenization import answer_ids, prompt_ids

    short, long = (
        task("t/0"),
        task("t/1", "    total = 0\n    for i in range(x):\n        total += i\n    return total\n"),
    )
    model, tokenizer = load_policy(str(tiny_model_dir))
    expected_nll, expected_tokens = 0.0, 0
    for spec in (short, long):  # one unpadded sequence at a time, by hand
        prompt = prompt_ids(tokenizer, spec.prompt)
        answer = answer_ids(tokenizer, spec.prompt, spec.reference_solution)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].float()
        logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        expected_nll -= float(logprobs[torch.arange(len(answer)), torch.tensor(answer)].sum())
        expected_tokens += len(answer)
    got = reference_perplexity((model, tokenizer), [short, long, task("t/2", None)])
    assert got["perplexity_tokens"] == expected_tokens and got["perplexity_tasks"] == 2
    assert got["reference_nll_per_token"] == pytest.approx(expected_nll / expected_tokens, rel=1e-4)
    assert got["perplexity"] == pytest.approx(math.exp(expected_nll / expected_tokens), rel=1e-4)
    one_by_one = reference_perplexity((model, tokenizer), [short, long], max_batch_tokens=1)
    assert one_by_one["perplexity"] == pytest.approx(got["perplexity"], rel=1e-4)
    assert reference_perplexity((model, tokenizer), [task(reference=None)])["perplexity"] is None


def test_the_output_line_names_the_signals_as_secondary():
    line = format_reference_metrics(
        {"bleu": 12.34, "exact_match": 0.25, "perplexity": 3.5, "perplexity_tokens": 1200}
    )
    assert line == (
        "vs reference solutions (secondary; pass@k is primary): BLEU 12.3, exact match 25.0 %, "
        "perplexity 3.5 on 1,200 reference tokens"
    )
    assert "no task has one" in format_reference_metrics({"bleu": None})


def test_the_report_shows_the_secondary_signals_beside_pass_at_k(db, tmp_path):
    import html
    import re

    from alignment.report import write_report
    from db.models import EvalResult, Policy

    setup = {
        "dataset": "mbpp",
        "split": "test",
        "n_samples": 1,
        "num_tasks": 500,
        "pass_at_k": {"pass@1": 0.3},
    }
    with db.session() as session:
        new, old = (
            Policy(name="new", checkpoint_path="/m/new", stage="sft"),
            Policy(name="old", checkpoint_path="/m/o", stage="sft"),
        )
        session.add_all([new, old])
        session.flush()
        metrics = {"bleu": 21.04, "exact_match": 0.05, "perplexity": 2.345, "perplexity_tokens": 9000}
        session.add_all(
            [EvalResult(policy_id=new.id, **setup, metrics=metrics), EvalResult(policy_id=old.id, **setup)]
        )
    page = write_report(tmp_path / "report", db).read_text()
    assert "secondary signals" in page
    page = page.split("<h3>Setup 1: ")[1].split("</table>")[0]  # the pass@k table
    header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", page)]
    assert header.index("pass@1 % [95 % CI]") < header.index("BLEU") < header.index("exact match %")
    assert header.index("exact match %") < header.index("perplexity")
    cells = {
        row[0]: row
        for row in (
            [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", page)
        )
        if row
    }
    assert cells["new"][-4:-1] == ["21.0", "5.0", "2.35"]
    assert cells["old"][-4:-1] == ["—", "—", "—"]  # a result stored before these signals: not measured
