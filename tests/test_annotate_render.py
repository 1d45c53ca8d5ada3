"""HTML rendering: escaping of everything from the DB, indentation, line numbers, error-line highlight, and
static findings an annotator can act on (the completion's own, with a legend)."""

import re

from annotation_ui.render import completion_html, static_html, verdict_html
from annotation_ui.views import CompletionView
from reward.static import analyze_batch

EVIL = '</pre><script>alert(1)</script><img src=x onerror="alert(2)">'
PROMPT = 'def f(xs):\n    """Sum."""\n'


def view(**kw) -> CompletionView:
    kw.setdefault("text", f"    s = {EVIL!r}\n        return s\n")
    return CompletionView(completion_id=1, label="A", **kw)


def test_code_is_escaped_keeps_indentation_and_continues_prompt_line_numbers():
    page = completion_html(
        view(verdict="failed", error_line=4), PROMPT, show_execution=True, show_static=False
    )
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert '<span class="linenos">3</span>    ' in page  # line 3 = first completion line, 4 spaces kept
    assert '<span class="hll"><span class="linenos">4</span>        ' in page  # the sandbox's error line


def test_verdict_and_findings_are_escaped_and_hidden_on_request():
    bad = view(verdict="runtime_error", tests_passed=1, tests_total=3, error_type="<b>Boom</b>", error_line=7)
    assert "&lt;b&gt;Boom&lt;/b&gt;" in verdict_html(bad) and "1/3 tests" in verdict_html(bad)
    assert "passed" in verdict_html(view(verdict="passed", tests_passed=2, tests_total=2))
    assert "not executed" in verdict_html(view())
    findings = {"ruff": [{"code": "E501", "line": 3, "message": EVIL}], "bandit": [], "syntax_error": None}
    html = static_html(view(static_scores={"lint": 0.5}, static_findings=findings))
    assert "<script>" not in html and "&lt;script&gt;" in html and "1 lint finding" in html
    assert "no security findings" in html and "syntax_error" not in html
    blind = completion_html(view(verdict="passed"), PROMPT, show_execution=False, show_static=False)
    assert "passed" not in blind and "ca-static" not in blind


# A HumanEval-shaped prompt: an import ruff flags (UP035), a fully written helper with branches, and a
# docstring line over the line limit (E501). None of that is the completions' doing.
HE_PROMPT = (
    "from typing import List\n\n\n"
    "def helper(x: int) -> int:\n"
    "    if x > 0:\n        return 1\n    if x < 0:\n        return -1\n"
    "    for _ in range(x):\n        if x:\n            return 2\n    while x:\n        x -= 1\n"
    "    return 0 if x else 3\n\n\n"
    "def has_close(numbers: List[float], threshold: float) -> bool:\n"
    f'    """Check whether any two numbers are closer than threshold. {"Long words. " * 8}\n'
    '    >>> has_close([1.0, 2.0], 0.5)\n    False\n    """\n'
)
CLEAN_BODY = "    return any(abs(a - b) < threshold for a in numbers for b in numbers if a is not b)\n"
SLOPPY_BODY = (
    "    import os\n"
    '    unused = eval("1")\n'
    "    if numbers == None:\n"
    "        return False\n"
    "    return any(abs(a - b) < threshold for a in numbers for b in numbers if a is not b)\n"
)


def scored_view(body: str) -> CompletionView:
    """What `codealign score` stores for prompt + body (reward.scoring), as the page loads it."""
    (static,) = analyze_batch([HE_PROMPT + body], score_from_line=[HE_PROMPT.count("\n") + 1])
    findings = dict(static.findings, syntax_error=static.syntax_error)
    return view(text=body, static_scores=static.scores, static_findings=findings)


def static_part(card: str) -> str:
    return card[card.index('<div class="ca-static">') :]


def test_card_shows_the_completions_findings_with_rule_line_and_message_not_the_prompts():
    first = HE_PROMPT.count("\n") + 1  # the completion's first line, as the card numbers it
    sloppy = scored_view(SLOPPY_BODY)
    prompt_findings = [f for f in sloppy.static_findings["ruff"] if f["line"] < first]
    assert {f["code"] for f in prompt_findings} >= {"E501", "UP035"}  # the prompt really has findings
    card = static_part(completion_html(sloppy, HE_PROMPT, show_execution=True, show_static=True))
    for code in ("E501", "UP035", "UP006"):
        assert code not in card  # the prompt's findings are the same on every card: not shown
    assert f"<code>F401</code> line {first}: `os` imported but unused" in card
    assert f"<code>E711</code> line {first + 2}: Comparison to `None`" in card
    assert f"<code>B307 MEDIUM</code> line {first + 1}: Use of possibly insecure function" in card
    assert "lint finding" in card and "1 security finding" in card
    assert 'title="ruff F401 (pyflakes' in card  # what the rule family checks, on hover
    # complexity of the completion's function, not of the helper written out in the prompt
    (entry,) = [b for b in sloppy.static_findings["radon"] if b["name"] == "has_close"]
    (helper,) = [b for b in sloppy.static_findings["radon"] if b["name"] == "helper"]
    assert helper["complexity"] > entry["complexity"]
    assert f"complexity {entry['complexity']}<" in card and f"complexity {helper['complexity']}<" not in card
    legend = card[card.index("What do these mean?") :]
    assert "cyclomatic complexity" in legend and "bandit" in legend and "prompt" in legend


def test_clean_completion_shows_no_perfect_score_noise():
    card = static_part(
        completion_html(scored_view(CLEAN_BODY), HE_PROMPT, show_execution=True, show_static=True)
    )
    summary = card[: card.index("<details")]
    assert "no lint or security findings" in summary and "ca-quiet" in summary
    assert not re.search(r"\d\.\d\d", summary)  # the reward's 0..1 scores live in the legend only
    assert "<li" not in summary
    assert "Scores the reward uses" in card[card.index("<details") :]
