"""The ``basic`` suite: sizes, determinism, structure-disjoint splits, references pass, mutants fail."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from codealign.tasks.basic import build_suite, generate_suite


@pytest.fixture(scope="module")
def suite():
    return generate_suite(seed=0)


def _failing_tests(program: str, task) -> int:
    """How many of the task's test snippets fail against ``program`` (our own generated code, in-process)."""
    namespace: dict = {}
    try:
        exec(program, namespace)  # noqa: S102 -- generated suite code
    except Exception:  # noqa: BLE001 -- any error is a failing test
        return len(task.tests)
    failures = 0
    for snippet in task.tests:
        try:
            exec(snippet, dict(namespace))  # noqa: S102
        except Exception:  # noqa: BLE001 -- any error is a failing test
            failures += 1
    return failures


def _structures(tasks, split):
    return {(t.meta["family"], tuple(t.meta["structure"])) for t in tasks if t.split == split}


def test_split_sizes_and_ids(suite):
    counts = Counter(t.split for t in suite)
    assert counts["train"] >= 2000
    assert counts["test"] == 200
    assert counts["pool"] >= 500
    ids = [t.task_id for t in suite]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"basic/{t.split}/\d{{4}}", t.task_id) for t in suite)
    assert len({t.prompt for t in suite}) == len(suite)


def test_train_spans_every_family(suite):
    families = {t.meta["family"] for t in suite if t.split == "train"}
    assert families == {"arithmetic", "strings", "lists", "dicts", "conditionals", "loops"}


def test_supervised_training_never_sees_a_held_out_structure(suite):
    train, test, pool = (_structures(suite, s) for s in ("train", "test", "pool"))
    assert not train & test
    assert not pool & train


def test_pool_holds_fresh_instances_of_every_test_structure(suite):
    """RL prompts from the held-out distribution (docs/pipeline.md), never a held-out prompt itself."""
    test_structures = _structures(suite, "test")
    assert test_structures <= _structures(suite, "pool")
    assert len(_structures(suite, "pool") - test_structures) >= 500  # plus structures seen nowhere else
    test_prompts = {t.prompt for t in suite if t.split == "test"}
    test_tests = {tuple(t.tests) for t in suite if t.split == "test"}
    pool = [t for t in suite if t.split == "pool"]
    assert not test_prompts & {t.prompt for t in pool}
    assert not test_tests & {tuple(t.tests) for t in pool}


def test_held_out_split_design(suite):
    """docs/pipeline.md: test = unseen depth-3 compositions; train = all depth <= 2 plus ~10 % of depth 3."""
    test = [t for t in suite if t.split == "test"]
    assert {t.meta["family"] for t in test} == {"arithmetic", "strings"}
    assert {t.meta["depth"] for t in test} == {3}
    train_depths = Counter(
        t.meta["depth"] for t in suite if t.split == "train" and t.meta["family"] == "arithmetic"
    )
    assert train_depths[1] > 0 and train_depths[2] > 0
    depth3_train_structures = {
        s for f, s in _structures(suite, "train") if f in ("arithmetic", "strings") and len(s) == 3
    }
    assert 100 <= len(depth3_train_structures) <= 180  # 10 % of 2 x 720 permutations


def test_deterministic_by_seed(suite):
    again = build_suite(seed=0)  # uncached: really generated twice
    assert [(t.task_id, t.content_hash()) for t in again] == [(t.task_id, t.content_hash()) for t in suite]
    other = generate_suite(seed=1)
    assert [t.content_hash() for t in other] != [t.content_hash() for t in suite]


def test_every_reference_passes_its_tests(suite):
    for task in suite:
        assert task.prompt.endswith('"""\n') and task.reference_solution.startswith("    ")
        assert len(task.tests) >= 3
        assert _failing_tests(task.prompt + task.reference_solution, task) == 0, task.task_id


def test_mutated_solutions_fail(suite):
    """Dropping any one-line step of a chain, or returning the input unchanged, fails at least one test."""
    checked = 0
    for task in suite:
        body = task.reference_solution.splitlines(keepends=True)
        arg = re.search(r"\((\w+):", task.prompt).group(1)
        identity = f"    return {arg}\n"
        assert _failing_tests(task.prompt + identity, task) > 0, task.task_id
        if task.meta["family"] in ("arithmetic", "strings", "lists", "dicts"):
            for i, line in enumerate(body[:-1]):
                if line.rstrip().endswith(":") or (i > 0 and body[i - 1].rstrip().endswith(":")):
                    continue  # part of a block step: removing one line would not be a program
                mutant = "".join(body[:i] + body[i + 1 :])
                assert _failing_tests(task.prompt + mutant, task) > 0, (task.task_id, line)
                checked += 1
    assert checked > 5000
