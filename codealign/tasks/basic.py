"""The ``basic`` suite: procedurally generated Python function tasks a tiny CPU model can learn.

``generate_suite(seed)`` returns :class:`TaskSpec` s in three splits, deterministic by seed:

* ``train`` (>= 2,000): every arithmetic/string composition of depth 1 and 2, about 10 % of the depth-3
  compositions, plus list, dict, conditional and loop functions;
* ``test`` (200): other depth-3 arithmetic and string compositions, one instance each;
* ``pool`` (RL prompts, tests but no reference used): the remaining depth-3 compositions, plus two fresh
  instances of every test composition (other constants, inputs and tests; never a test prompt).

A task's *structure* is the tuple of operation names it composes (``meta["structure"]``); constants and
inputs are not part of it, so no held-out structure is ever seen in *supervised* training, whatever the
constants. This is the split that leaves something to align after SFT (docs/pipeline.md, *Design measurements*: splitting by constants or
by unseen pairs at the same depth lets plain SFT generalise to ~90 %). The pool is what RL practice uses:
unlabeled prompts from the distribution the policy is evaluated on (measured there: prompts drawn from held-out-like
compositions gave the gains, train-split prompts gave nothing); the quickstart's control row (SFT trained
further for the same steps) tells whether a gain is alignment or just more training.

Every task is checked when generated: its reference passes its tests, and for every step of the docstring a
mutant that skips the step fails at least one test (so each clause matters), as does returning the input. Pool tasks keep their
``reference_solution`` for tests of this module only; the pipeline must not train on them.

Example::

    from codealign.tasks.basic import generate_suite
    tasks = generate_suite(seed=0)
    print(tasks[0].prompt + tasks[0].reference_solution)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from codealign.errors import UserError
from codealign.tasks import basic_ops as ops
from codealign.tasks.spec import TaskSpec

SUITE = "basic"
DEPTH3_TRAIN_SHARE = 0.10
TEST_PER_FAMILY = {"arithmetic": 100, "strings": 100}
POOL_PER_STRUCTURE = 1
POOL_PER_TEST_STRUCTURE = 2
# Instances per structure in train: more for short compositions so every op is seen with many constants.
TRAIN_INSTANCES = {1: 12, 2: 5, 3: 3}
NUM_TESTS = 5
MAX_ATTEMPTS = 12
MAX_OUTPUT_REPR = 80


@dataclass
class _Draft:
    """A candidate task before its tests exist: the reference body and one mutant body per step."""

    family: str
    structure: tuple[str, ...]
    entry_point: str
    arg: str
    arg_type: str
    return_type: str
    description: str
    body: list[str]
    mutants: list[list[str]]
    inputs: list[Any]
    constants: list[Any] = field(default_factory=list)

    def prompt(self, example: tuple[Any, Any] | None) -> str:
        doc = self.description
        if example is not None:
            doc += f"\n\n    >>> {self.entry_point}({example[0]!r})\n    {example[1]!r}"
        return f'def {self.entry_point}({self.arg}: {self.arg_type}) -> {self.return_type}:\n    """{doc}\n    """\n'


def _indent(lines: list[str], by: int = 4) -> str:
    pad = " " * by
    return "".join(pad + line + "\n" for line in "\n".join(lines).split("\n"))


def _pick_constant(op: ops.Op, rng: random.Random) -> Any:
    return rng.choice(op.constants) if op.constants else None


# ------------------------------------------------------------------------------------------- drafts
def _chain_draft(family: str, chosen: list[ops.Op], rng: random.Random) -> _Draft:
    fam = ops.CHAIN_FAMILIES[family]
    consts = [_pick_constant(op, rng) for op in chosen]
    steps = [op.render_code(fam.var, c) for op, c in zip(chosen, consts)]
    phrases = [op.render_phrase(c) for op, c in zip(chosen, consts)]
    ret = f"return {fam.var}"
    return _Draft(
        family=family,
        structure=tuple(op.name for op in chosen),
        entry_point=f"{fam.name}_" + "_".join(op.name for op in chosen),
        arg=fam.var,
        arg_type=fam.type_hint,
        return_type=fam.type_hint,
        description=f"Given {fam.noun}: " + ", then ".join(phrases) + ". Return the result.",
        body=[*steps, ret],
        mutants=[[*steps[:i], *steps[i + 1 :], ret] for i in range(len(steps))],
        inputs=_inputs(family, rng),
        constants=consts,
    )


def _branch_draft(cond: ops.Op, then_op: ops.Op, else_op: ops.Op, rng: random.Random) -> _Draft:
    c_cond, c_then, c_else = (_pick_constant(op, rng) for op in (cond, then_op, else_op))
    test = cond.render_code("x", c_cond)
    then_code = then_op.render_code("x", c_then)
    else_code = else_op.render_code("x", c_else)

    def body(test_expr: str, then_line: str, else_line: str) -> list[str]:
        return [f"if {test_expr}:", "    " + then_line, "else:", "    " + else_line, "return x"]

    return _Draft(
        family="conditionals",
        structure=(cond.name, then_op.name, else_op.name),
        entry_point=f"branch_{cond.name}_{then_op.name}_{else_op.name}",
        arg="x",
        arg_type="int",
        return_type="int",
        description=(
            f"Given an integer x: if x {cond.render_phrase(c_cond)}, {then_op.render_phrase(c_then)}; "
            f"otherwise {else_op.render_phrase(c_else)}. Return the result."
        ),
        body=body(test, then_code, else_code),
        mutants=[
            body(f"not ({test})", then_code, else_code),
            body(test, "pass", else_code),
            body(test, then_code, "pass"),
        ],
        inputs=_inputs("arithmetic", rng),
        constants=[c_cond, c_then, c_else],
    )


def _loop_draft(aggregate: str, term: ops.Op, filt: ops.Op, rng: random.Random) -> _Draft:
    c_term, c_filt = _pick_constant(term, rng), _pick_constant(filt, rng)
    where = f" where {filt.render_phrase(c_filt)}" if filt.name != "all" else ""

    def body(term_expr: str, filt_expr: str) -> list[str]:
        acc, update = {
            "sum": ("total", f"total = total + {term_expr}"),
            "count": ("count", "count = count + 1"),
            "max": ("best", f"best = max(best, {term_expr})"),
        }[aggregate]
        loop = [f"{acc} = 0", "for i in range(1, n + 1):"]
        if filt_expr == "True":
            loop.append("    " + update)
        else:
            loop += [f"    if {filt_expr}:", "        " + update]
        return [*loop, f"return {acc}"]

    term_code, filt_code = term.render_code("i", c_term), filt.render_code("i", c_filt)
    if aggregate == "count":
        description = f"Return how many integers i from 1 to n satisfy: {filt.render_phrase(c_filt)}."
        mutants = [body(term_code, "True")]
    else:
        what = {"sum": "the sum", "max": "the largest value (or 0 if there is none)"}[aggregate]
        description = (
            f"Return {what} of {term.render_phrase(c_term)} over every integer i from 1 to n{where}."
        )
        mutants = [body("i", filt_code)] if term.name != "i" else []
        if filt.name != "all":
            mutants.append(body(term_code, "True"))
    structure = (aggregate, filt.name) if aggregate == "count" else (aggregate, term.name, filt.name)
    return _Draft(
        family="loops",
        structure=structure,
        entry_point="loop_" + "_".join(structure),
        arg="n",
        arg_type="int",
        return_type="int",
        description=description,
        body=body(term_code, filt_code),
        mutants=mutants,
        inputs=rng.sample(range(16), NUM_TESTS),
        constants=[c_term, c_filt],
    )


def _inputs(family: str, rng: random.Random) -> list[Any]:
    if family == "arithmetic":
        return rng.sample(ops.INT_INPUTS, NUM_TESTS)
    if family == "strings":
        return rng.sample(ops.STRING_INPUTS, NUM_TESTS)
    if family == "lists":
        return [[rng.randint(-4, 12) for _ in range(rng.randint(0, 6))] for _ in range(NUM_TESTS)]
    if family == "dicts":
        return [
            {k: rng.randint(-3, 9) for k in rng.sample(ops.DICT_KEYS, rng.randint(1, 4))}
            for _ in range(NUM_TESTS)
        ]
    raise ValueError(f"unknown family {family!r}")


# ----------------------------------------------------------------------------------------- checking
def _run(draft: _Draft, body: list[str]) -> list[Any] | None:
    """Outputs of ``body`` on the draft's inputs, or None if it raises or an output is unwieldy."""
    source = draft.prompt(None) + _indent(body)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(source, f"<{draft.entry_point}>", "exec"), namespace)  # noqa: S102 -- our own generated code
        fn = namespace[draft.entry_point]
        outputs = [fn(_copy(value)) for value in draft.inputs]
    except Exception:  # noqa: BLE001 -- any failure just rejects this candidate
        return None
    if any(len(repr(out)) > MAX_OUTPUT_REPR for out in outputs):
        return None
    return outputs


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (list, dict)) else value


def _finish(draft: _Draft, split: str) -> TaskSpec | None:
    """Attach tests; None if the reference fails or some step does not change any tested output."""
    outputs = _run(draft, draft.body)
    if outputs is None:
        return None
    for mutant in [*draft.mutants, [f"return {draft.arg}"]]:  # each step matters; not an identity
        if _run(draft, mutant) == outputs:
            return None
    tests = [f"assert {draft.entry_point}({arg!r}) == {out!r}" for arg, out in zip(draft.inputs, outputs)]
    return TaskSpec(
        task_id="",  # numbered once the split is complete
        prompt=draft.prompt((draft.inputs[0], outputs[0])),
        entry_point=draft.entry_point,
        tests=tests,
        reference_solution=_indent(draft.body),
        split=split,
        meta={
            "suite": SUITE,
            "family": draft.family,
            "structure": list(draft.structure),
            "depth": len(draft.structure) if draft.family in ops.CHAIN_FAMILIES else None,
            "constants": draft.constants,
        },
    )


# --------------------------------------------------------------------------------------- structures
def _chain_structures(family: str, depth: int) -> list[tuple[ops.Op, ...]]:
    return list(itertools.permutations(ops.CHAIN_FAMILIES[family].ops, depth))


def _instances(make_draft, key: str, count: int, split: str, seen: set[str]) -> list[TaskSpec]:
    """Up to ``count`` distinct valid tasks of one structure; ``make_draft(rng)`` builds a candidate."""
    found: list[TaskSpec] = []
    for attempt in range(count * MAX_ATTEMPTS):
        if len(found) == count:
            break
        task = _finish(make_draft(random.Random(f"{key}/{attempt}")), split)
        if task is not None and task.prompt not in seen:
            seen.add(task.prompt)
            found.append(task)
    return found


def _number(tasks: list[TaskSpec], split: str, rng: random.Random, first: int = 1) -> list[TaskSpec]:
    rng.shuffle(tasks)
    width = max(4, len(str(first + len(tasks))))
    return [
        TaskSpec(
            f"{SUITE}/{split}/{i:0{width}d}",
            t.prompt,
            t.entry_point,
            t.tests,
            t.reference_solution,
            split,
            t.meta,
        )
        for i, t in enumerate(tasks, start=first)
    ]


SUITE_STYLES = ("clean", "mixed")


def generate_suite(seed: int = 0, styles: str = "clean") -> list[TaskSpec]:
    """All ``basic`` tasks (train, then test, then pool), identical for identical seeds.

    ``styles="mixed"`` renders the train references in several styles (:mod:`codealign.tasks.basic_styles`);
    task ids, prompts and tests are the same either way. Cached per process (generation takes a second or
    two); the list is a fresh copy on each call, the TaskSpecs are shared and must not be mutated.
    """
    if styles not in SUITE_STYLES:
        raise UserError(f"styles: must be one of {', '.join(SUITE_STYLES)}, got {styles!r}")
    return list(_cached_suite(seed, styles))


@functools.lru_cache(maxsize=4)
def _cached_suite(seed: int, styles: str) -> tuple[TaskSpec, ...]:
    tasks = build_suite(seed)
    if styles == "mixed":
        tasks = [_restyled(t, seed) if t.split == "train" else t for t in tasks]
    return tuple(tasks)


def _restyled(task: TaskSpec, seed: int) -> TaskSpec:
    """``task`` with its reference in a style drawn for it (seeded by its id); clean when that rendering does
    not pass the task's own tests."""
    from codealign.tasks.basic_styles import pick_style, render

    rng = random.Random(f"{seed}/style/{task.task_id}")
    style = pick_style(rng)
    var = task.prompt.split("(", 1)[1].split(":", 1)[0]
    body = [line[4:] for line in task.reference_solution.rstrip("\n").split("\n")]
    lines = render(body, var, style, rng)
    if lines is None or not _passes(task, _indent(lines)):
        style, lines = "clean", body
    return dataclasses.replace(task, reference_solution=_indent(lines), meta={**task.meta, "style": style})


def _passes(task: TaskSpec, reference: str) -> bool:
    namespace: dict[str, Any] = {}
    try:
        exec(compile(task.prompt + reference, f"<{task.task_id}>", "exec"), namespace)  # noqa: S102 -- ours
        for test in task.tests:
            exec(test, dict(namespace))  # noqa: S102 -- the suite's own generated tests
    except Exception:  # noqa: BLE001 -- any failure rejects the rendering
        return False
    return True


def build_suite(seed: int = 0) -> list[TaskSpec]:
    """Generate the suite from scratch (uncached); see :func:`generate_suite`."""
    # pool_like_test joins the pool after it, numbered after the original pool ids so that a database
    # imported before it existed keeps every task id and its content
    splits: dict[str, list[TaskSpec]] = {"train": [], "test": [], "pool": [], "pool_like_test": []}
    seen: set[str] = set()

    def add(split: str, make_draft, key: str, count: int) -> int:
        new = _instances(make_draft, f"{seed}/{key}", count, split, seen)
        splits[split].extend(new)
        return len(new)

    for family in ("arithmetic", "strings"):
        for depth in (1, 2):
            for combo in _chain_structures(family, depth):
                add(
                    "train",
                    lambda r, f=family, c=combo: _chain_draft(f, list(c), r),
                    f"{family}/{[o.name for o in combo]}",
                    TRAIN_INSTANCES[depth],
                )
        depth3 = _chain_structures(family, 3)
        random.Random(f"{seed}/{family}/depth3").shuffle(depth3)
        n_train = round(len(depth3) * DEPTH3_TRAIN_SHARE)
        test_left = TEST_PER_FAMILY[family]
        for index, combo in enumerate(depth3):

            def draft(r, f=family, c=combo):
                return _chain_draft(f, list(c), r)

            key = f"{family}/{[o.name for o in combo]}"
            if index < n_train:
                add("train", draft, key, TRAIN_INSTANCES[3])
            elif test_left > 0:
                added = add("test", draft, key, 1)
                test_left -= added
                if added:  # RL prompts like the held-out ones: same operations, other constants and inputs
                    add("pool_like_test", draft, f"{key}/pool", POOL_PER_TEST_STRUCTURE)
            else:
                add("pool", draft, key, POOL_PER_STRUCTURE)

    for family in ("lists", "dicts"):
        for depth, count in ((1, 8), (2, 3)):
            for combo in _chain_structures(family, depth):
                add(
                    "train",
                    lambda r, f=family, c=combo: _chain_draft(f, list(c), r),
                    f"{family}/{[o.name for o in combo]}",
                    count,
                )

    for cond, then_op, else_op in itertools.product(ops.CONDITIONS, ops.BRANCH_OPS, ops.BRANCH_OPS):
        if then_op is not else_op:
            add(
                "train",
                lambda r, a=cond, b=then_op, c=else_op: _branch_draft(a, b, c, r),
                f"conditionals/{cond.name}/{then_op.name}/{else_op.name}",
                2,
            )

    for aggregate in ops.LOOP_AGGREGATES:
        terms = ops.LOOP_TERMS[:1] if aggregate == "count" else ops.LOOP_TERMS
        for term, filt in itertools.product(terms, ops.LOOP_FILTERS):
            if aggregate == "count" and filt.name == "all":
                continue
            add(
                "train",
                lambda r, a=aggregate, t=term, f=filt: _loop_draft(a, t, f, r),
                f"loops/{aggregate}/{term.name}/{filt.name}",
                4,
            )

    order = random.Random(f"{seed}/order")
    numbered = [task for split in ("train", "test", "pool") for task in _number(splits[split], split, order)]
    extra = _number(splits["pool_like_test"], "pool", order, first=len(splits["pool"]) + 1)
    return numbered + extra
