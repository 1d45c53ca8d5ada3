"""MBPP from the user's file: the original and sanitized formats, the published splits, the standard prompt,
one-line errors with nothing written, and ``eval --dataset mbpp`` on the imported copy."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from alignment.cli import main
from codealign.errors import UserError
from codealign.tasks.mbpp import load_mbpp, mbpp_split
from db.models import Task
from db.tasks import TaskSelection, load_tasks

# MBPP's format (Windows line ends in the code, as published); ids chosen to hit every split
ROWS = [
    {
        "task_id": 2,
        "text": "Write a function to find the similar elements from the given two tuple lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
        "  return (res) ",
        "test_list": [
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given character from the string.",
        "code": "import re\r\ndef _strip(s):\r\n    return s\r\ndef remove_Occ(s,ch): \r\n"
        "    s = s.replace(ch, '', 1)\r\n    return _strip(s[::-1].replace(ch, '', 1)[::-1])",
        "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"'],
        "test_setup_code": "",
        "challenge_test_list": ['assert remove_Occ("","l") == ""'],
    },
    {
        "task_id": 12,
        "text": "Write a function to add a constant to a number.",
        "code": "def add_k(x): return x + K",
        "test_list": ["assert add_k(1) == 11", "assert math.isclose(add_k(0.5), 10.5)"],
        "test_setup_code": "import math\nK = 10",
        "challenge_test_list": [],
    },
    {
        "task_id": 520,
        "text": "Write a function to find the lcm of the given array elements.",
        "code": "from math import lcm\ndef get_lcm(l):\n  out = 1\n  for x in l:\n    out = lcm(out, x)\n  return out",
        "test_list": ["assert get_lcm([2, 7, 3, 9, 4]) == 252"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 601,
        "text": "Write a function to double a number.",
        "code": "def double(n):\n    return 2 * n\n",
        "test_list": ["assert double(2) == 4"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
]


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def mbpp_file(tmp_path):
    return write(tmp_path / "mbpp.jsonl", ROWS)


def count(db, source="mbpp"):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Task).where(Task.source == source))


def test_published_splits_by_task_id():
    assert [mbpp_split(i) for i in (1, 10, 11, 510, 511, 600, 601, 974)] == [
        "prompt",
        "prompt",
        "test",
        "test",
        "validation",
        "validation",
        "train",
        "train",
    ]
    assert mbpp_split(0) is None and mbpp_split(975) is None


def test_standard_prompt_and_reference_rebuild_the_original_code_and_pass_its_tests(mbpp_file):
    specs = load_mbpp(mbpp_file)
    assert [(s.task_id, s.split) for s in specs] == [
        ("mbpp/2", "prompt"),
        ("mbpp/11", "test"),
        ("mbpp/12", "test"),
        ("mbpp/520", "validation"),
        ("mbpp/601", "train"),
    ]
    occ = specs[1]
    docstring = f'"""\n{ROWS[1]["text"]}\n{ROWS[1]["test_list"][0]}\n"""\n'
    # the standard prompt, then the code up to the signature of the function the first test calls
    assert occ.prompt == docstring + "import re\ndef _strip(s):\n    return s\ndef remove_Occ(s,ch): \n"
    assert occ.entry_point == "remove_Occ" and occ.reference_solution.startswith("    s = s.replace")
    assert occ.prompt + occ.reference_solution == docstring + ROWS[1]["code"].replace("\r\n", "\n")
    assert occ.meta["challenge_tests"] == ['assert remove_Occ("","l") == ""'] and occ.meta["mbpp_id"] == 11
    for spec in specs:
        assert len(spec.tests) == len(
            next(r for r in ROWS if f"mbpp/{r['task_id']}" == spec.task_id)["test_list"]
        )
        for test in spec.tests:
            exec(spec.prompt + spec.reference_solution + "\n" + test, {})  # noqa: S102 -- raises if a test fails
    one_liner = specs[2]  # `def add_k(x): return x + K`: the body goes on its own line after the signature
    assert one_liner.prompt.endswith("def add_k(x):\n") and one_liner.reference_solution == "    return x + K"
    assert one_liner.tests[1] == "import math\nK = 10\nassert math.isclose(add_k(0.5), 10.5)\n"
    with pytest.raises(AssertionError):
        exec(one_liner.prompt + "    return x\n" + one_liner.tests[0], {})  # noqa: S102


def test_sanitized_subset_as_published_json_array(tmp_path, db):
    rows = [
        {
            "source_file": "Benchmark Questions Verification V2.ipynb",
            "task_id": 11,
            "prompt": "Write a python function to remove first and last occurrence of a given character.",
            "code": "def remove_Occ(s,ch):\n    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]",
            "test_imports": [],
            "test_list": ['assert remove_Occ("hello","l") == "heo"'],
        },
        {
            "source_file": "Benchmark Questions Verification V2.ipynb",
            "task_id": 605,
            "prompt": "Write a function to check if the given integer is a prime number.",
            "code": "def prime_num(num):\n    return num > 1 and all(num % i for i in range(2, isqrt(num) + 1))",
            "test_imports": ["from math import isqrt"],
            "test_list": ["assert prime_num(13)==True", "assert prime_num(8)==False"],
        },
    ]
    path = tmp_path / "sanitized-mbpp.json"
    path.write_text(json.dumps(rows, indent=1))
    assert main(["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(path)]) == 0
    specs = load_tasks(TaskSelection("mbpp-sanitized", ["test", "train"]), db)
    assert [(s.task_id, s.split, s.meta["subset"]) for s in specs] == [
        ("mbpp/11", "test", "sanitized"),
        ("mbpp/605", "train", "sanitized"),
    ]
    assert specs[1].tests[0] == "from math import isqrt\nassert prime_num(13)==True\n"
    assert specs[1].prompt.startswith(f'"""\n{rows[1]["prompt"]}\n{rows[1]["test_list"][0]}\n"""\n')


def test_cli_import_counts_splits_and_is_idempotent(mbpp_file, db, capsys):
    argv = ["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(mbpp_file)]
    assert main(argv) == 0 and "mbpp: 5 tasks (5 added" in capsys.readouterr().out
    assert main(argv) == 0 and "5 unchanged" in capsys.readouterr().out
    assert main(["--db", db.url, "tasks", "list", "--counts", "--source", "mbpp"]) == 0
    counts = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert counts == [
        ["mbpp", "prompt", "1"],
        ["mbpp", "test", "2"],
        ["mbpp", "train", "1"],
        ["mbpp", "validation", "1"],
    ]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({k: v for k, v in ROWS[4].items() if k != "test_list"}, "test_list"),
        ({**ROWS[4], "task_id": 975}, "task_id"),
        ({**ROWS[4], "task_id": "six"}, "task_id"),
        ({**ROWS[4], "text": ""}, "text"),
        ({**ROWS[4], "test_list": []}, "test_list"),
        ({**ROWS[4], "test_list": "assert double(2) == 4"}, "test_list"),
        ({**ROWS[4], "test_setup_code": None}, "test_setup_code"),
        ({**ROWS[4], "task_id": 2}, "duplicate task_id"),
        ("{not json", "invalid JSON"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_line_and_field_and_nothing_is_written(
    tmp_path, db, capsys, bad, field
):
    path = write(tmp_path / "mbpp.jsonl", [*ROWS, bad])
    with pytest.raises(UserError) as err:
        load_mbpp(path)
    assert str(path) in str(err.value) and "line 6" in str(err.value) and field in str(err.value)
    assert main(["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(path)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and field in message
    assert count(db) == 0


def test_suite_mbpp_needs_a_file_and_a_missing_file_is_named(tmp_path, db, capsys):
    assert main(["--db", db.url, "tasks", "import", "--suite", "mbpp"]) == 2
    assert "--suite mbpp needs --file" in capsys.readouterr().err
    assert (
        main(["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(tmp_path / "no.jsonl")])
        == 2
    )
    assert "no.jsonl" in capsys.readouterr().err
    assert main(["--db", db.url, "tasks", "import", "--suite", "basic", "--file", str(tmp_path / "x")]) == 2
    assert "--file goes with --suite mbpp" in capsys.readouterr().err


def test_eval_dataset_mbpp_scores_the_imported_test_split(mbpp_file, db, tmp_path, capsys):
    assert main(["--db", db.url, "eval", "--samples", str(tmp_path / "s.jsonl"), "--dataset", "mbpp"]) == 2
    assert "codealign tasks import --suite mbpp --file" in capsys.readouterr().err
    assert main(["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(mbpp_file)]) == 0
    tasks = {t.task_id: t for t in load_tasks(TaskSelection("mbpp", ["test"]), db)}
    samples = write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "mbpp/11", "completion": tasks["mbpp/11"].reference_solution},
            {"task_id": "mbpp/12", "completion": "    return x\n"},
        ],
    )
    capsys.readouterr()
    argv = [
        "--db",
        db.url,
        "eval",
        "--samples",
        str(samples),
        "--dataset",
        "mbpp",
        "--split",
        "test",
        "--k",
        "1",
    ]
    assert main([*argv, "--workers", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"pass@1": 0.5}
    assert "exact match 50.0 %" in captured.err


def test_eval_policy_on_mbpp_stores_pass_at_k_and_the_secondary_metrics(
    mbpp_file, db, tiny_model_dir, tmp_path, capsys
):
    from db.models import EvalResult

    assert main(["--db", db.url, "tasks", "import", "--suite", "mbpp", "--file", str(mbpp_file)]) == 0
    argv = ["--db", db.url, "eval", "--policy", str(tiny_model_dir), "--dataset", "mbpp", "--split", "test"]
    assert (
        main([*argv, "--k", "1", "--max-new-tokens", "4", "--output-dir", str(tmp_path), "--workers", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "on mbpp/test: pass@1 " in out and "(2 tasks x 1 samples)" in out and "perplexity" in out
    with db.session() as session:
        result = session.scalars(select(EvalResult)).one()
        assert (result.dataset, result.split, result.num_tasks) == ("mbpp", "test", 2)
        assert result.metrics["perplexity"] > 1 and result.metrics["perplexity_tasks"] == 2
        assert 0 <= result.metrics["bleu"] <= 100 and result.metrics["reference_samples"] == 2
