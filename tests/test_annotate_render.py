"""HTML rendering: escaping of everything from the DB, indentation, line numbers, error-line highlight."""

from annotation_ui.render import completion_html, static_html, verdict_html
from annotation_ui.views import CompletionView

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
    assert (
        "<script>" not in html and "ruff: 1" in html and "bandit" not in html and "syntax_error" not in html
    )
    blind = completion_html(view(verdict="passed"), PROMPT, show_execution=False, show_static=False)
    assert "passed" not in blind and "ca-static" not in blind
