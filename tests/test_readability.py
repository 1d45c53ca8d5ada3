"""Readability issues: each detector on a small program, the prompt's lines ignored, clean code clean."""

from __future__ import annotations

import pytest

from reward.readability import issue_rate, legend, readability_issues

PROMPT = 'def f(x: int) -> int:\n    """Add three, then double. Return the result."""\n'
START = PROMPT.count("\n") + 1


@pytest.mark.parametrize(
    ("body", "codes"),
    [
        ("    x = x + 3\n    x = x * 2\n    return x\n", set()),  # one step per line: clean
        ("    return (x + 3) * 2\n", set()),
        ("    unused = 0\n    x = x + 3\n    return x * 2\n", {"F841"}),
        ("    x = x + 3\n    x = x\n    return x * 2\n", {"PLW0127"}),
        ("    value = x + 3\n    result = value * 2\n    return result\n", {"RET504"}),
        ("    value = x\n    value = value + 3\n    return value * 2\n", {"CA003"}),
        ("    x = (x + 3)\n    return x * 2\n", {"CA002"}),
        ("    if True:\n        x = x + 3\n    return x * 2\n", {"CA001"}),
        ("    return (x + 3) * 2\n    x = 1\n", {"CA004"}),
        ("    x = x + 3\n    pass\n    return x * 2\n", {"CA005"}),
        ("    return (x +\n", {"E999"}),
    ],
)
def test_each_detector(body, codes):
    (found,) = readability_issues([PROMPT + body], [START])
    assert {i.code for i in found} == codes
    assert all(i.line >= START for i in found)


def test_the_prompt_is_not_the_policys_writing():
    sloppy_prompt = "def helper(y):\n    unused = 1\n    return y\n\n" + PROMPT
    (found,) = readability_issues(
        [sloppy_prompt + "    return (x + 3) * 2\n"], [sloppy_prompt.count("\n") + 1]
    )
    assert found == []


def test_issue_rate_over_all_and_over_a_mask():
    issues = readability_issues(
        [PROMPT + "    return x\n", PROMPT + "    unused = 0\n    return x\n"], [START, START]
    )
    assert (
        issue_rate(issues) == 0.5 and issue_rate(issues, [True, False]) == 0.0 and issue_rate([], []) is None
    )
    assert legend("SIM102") == "a simpler spelling exists" and legend("F841").startswith("dead code")


def test_mixed_style_references_are_correct_and_only_the_clean_styles_read_clean():
    from collections import defaultdict

    from codealign.tasks.basic import generate_suite

    mixed, plain = generate_suite(0, "mixed"), generate_suite(0)
    assert [(t.task_id, t.prompt, t.tests) for t in mixed] == [(t.task_id, t.prompt, t.tests) for t in plain]
    train = [t for t in mixed if t.split == "train"]
    styles = {t.meta["style"] for t in train}
    assert styles == {"clean", "one_line", "verbose", "sloppy"}
    sample = train[::20]
    found = readability_issues(
        [t.prompt + t.reference_solution for t in sample], [t.prompt.count("\n") + 1 for t in sample]
    )
    rate = defaultdict(list)
    for task, issues in zip(sample, found):
        rate[task.meta["style"]].append(bool(issues))
        namespace: dict = {}
        exec(task.prompt + task.reference_solution, namespace)  # noqa: S102 -- the suite's own code
        for test in task.tests:  # every rendering passes its task's tests
            exec(test, dict(namespace))  # noqa: S102
    assert not any(rate["clean"]) and not any(rate["one_line"])
    assert all(rate["verbose"]) and all(rate["sloppy"])
