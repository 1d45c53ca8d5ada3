"""Load benchmark of `codealign serve`: N concurrent clients x M requests, batched vs one request at a time.

Without ``--url`` the bench prepares everything in a temporary directory: the embedded model (built here from
``--preset``, random weights; or ``--policy DIR``), a SQLite database with the basic suite and one API key per
client, and ``codealign serve`` as its own process, as deployed. Each client sends its requests back to back
(a closed loop, no pause) with its own key and a prompt of the basic test split. Setups, one server each:

* ``batched``: the shipped batching config (configs/serve.yaml);
* ``one at a time``: ``--max-batch-size 1``, the baseline of the goal (batched >= 5x its requests/s at 16
  clients);
* ``int8`` (``--quantize int8``): torch's dynamic quantization, the same load; then greedy pass@1 on
  ``--pass-tasks`` tasks of the basic test split, measured through the API's ``verify`` (the sandbox), for the
  float and the int8 model, and how many of their greedy completions are identical.

Per setup: throughput (requests/s, completion tokens/s), p50/p95 latency, 429s and errors (anything else
but a 200). With ``--url`` it loads a running server once (``--key`` and ``--model`` required).

    .venv/bin/python bench/serve_load.py                    # 16 clients x 8 requests, three setups
    .venv/bin/python bench/serve_load.py --clients 2 --requests 2 --preset test --pass-tasks 2   # quick look
    .venv/bin/python bench/serve_load.py --url http://127.0.0.1:8000 --key KEY --model NAME
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.keys import create_key
from db.migrate import upgrade
from db.models import Task
from db.session import Database, dispose_engines
from db.tasks import builtin_suite, import_tasks

MODEL = "bench"
GOAL_SPEEDUP = 5.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200
    completion_tokens: int = 0
    limited: int = 0  # 429
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    def line(self, label: str) -> str:
        ms = sorted(x * 1000 for x in self.latencies) or [float("nan")]
        return (
            f"{label:<14} {len(self.latencies):>5} ok  {self.rps:>7.2f} req/s  "
            f"{self.completion_tokens / self.wall_s:>8.1f} tok/s  p50 {percentile(ms, 0.5):>7.0f} ms  "
            f"p95 {percentile(ms, 0.95):>7.0f} ms  429s {self.limited:>3}  errors {len(self.errors)}"
        )


async def client(http: httpx.AsyncClient, key: str, prompts: list[str], body: dict, load: Load) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    for prompt in prompts:
        start = time.perf_counter()
        try:
            response = await http.post("/v1/completions", json={**body, "prompt": prompt}, headers=headers)
        except httpx.HTTPError as exc:
            load.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if response.status_code == 200:
            load.latencies.append(time.perf_counter() - start)
            load.completion_tokens += response.json()["usage"]["completion_tokens"]
        elif response.status_code == 429:
            load.limited += 1
        else:
            load.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")


async def run_load(url: str, keys: list[str], prompts: list[str], requests: int, body: dict) -> Load:
    """``len(keys)`` clients, each ``requests`` requests back to back; one warm-up request first."""
    rng = random.Random(0)
    load = Load()
    limits = httpx.Limits(max_connections=len(keys) + 1)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await client(http, keys[0], [prompts[0]], body, Load())
        plans = [[rng.choice(prompts) for _ in range(requests)] for _ in keys]
        start = time.perf_counter()
        await asyncio.gather(*(client(http, k, p, body, load) for k, p in zip(keys, plans)))
        load.wall_s = time.perf_counter() - start
    return load


async def greedy_verdicts(url: str, key: str, task_ids: list[str], max_tokens: int) -> list[tuple[bool, str]]:
    """``(passed, completion)`` per task at T=0, the sandbox's verdict from the API's ``verify``."""
    headers = {"Authorization": f"Bearer {key}"}

    async def one(http: httpx.AsyncClient, task_id: str) -> tuple[bool, str]:
        body = {
            "model": MODEL,
            "temperature": 0,
            "max_tokens": max_tokens,
            "verify": {"task_id": task_id, "source": "basic"},
        }
        response = await http.post("/v1/completions", json=body, headers=headers)
        response.raise_for_status()
        choice = response.json()["choices"][0]
        return bool(choice["verification"]["passed"]), choice["text"]

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        return list(await asyncio.gather(*(one(http, t) for t in task_ids)))


def generate_bound(policy: str, prompts: list[str], rows: int, tokens: int) -> float:
    """How much one generate call of ``rows`` gains over ``rows`` calls of one when every row runs exactly
    ``tokens`` tokens (the model alone, no HTTP): the most batching can give on this machine at this size."""
    import torch

    from alignment.generation import load_policy
    from alignment.serve.config import ServeConfig

    torch.set_num_threads(ServeConfig().threads())  # as the server runs it
    model, tokenizer = load_policy(policy)
    tokenizer.padding_side = "left"

    def timed(batch: list[str]) -> float:
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **enc,
                min_new_tokens=tokens,
                max_new_tokens=tokens,
                do_sample=True,
                pad_token_id=tokenizer.pad_token_id,
            )
        return time.perf_counter() - start

    timed(prompts[:1])  # warm-up
    one = statistics.median(timed(prompts[i : i + 1]) for i in range(3))
    return rows * one / timed(prompts[:rows])


class Server:
    """``codealign serve`` as its own process on a free port; the URL is read from its first line."""

    def __init__(self, db: Database, policy: str, workdir: Path, extra: list[str]):
        command = [sys.executable, "-m", "alignment.cli", "--db", db.url, "serve", "--policy", policy]
        command += ["--model-name", MODEL, "--port", "0", *extra]
        self.proc = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output: list[str] = []
        for line in self.proc.stdout:
            self.output.append(line)
            if " on http://" in line:
                self.url = line.split(" on ", 1)[1].split("/v1", 1)[0]
                break
        else:
            raise SystemExit("codealign serve did not start:\n" + "".join(self.output[-30:]))
        # the pipe keeps draining, or a chatty server would block on a full pipe
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prepare(workdir: Path, args: argparse.Namespace) -> tuple[Database, str, list[str], list[str], list[str]]:
    """The database (schema, basic suite, keys), the policy directory, keys, test prompts and task ids."""
    db = Database.at(f"sqlite:///{workdir / 'bench.db'}")
    upgrade(db)
    with db.session() as session:
        import_tasks(session, builtin_suite("basic"), "basic", created_by="bench")
        keys = [create_key(session, f"client{i}", created_by="bench")[1] for i in range(args.clients)]
        rows = session.query(Task).filter(Task.source == "basic", Task.split == "test").order_by(Task.id)
        tests = [(r.task_id, r.prompt) for r in rows]
    dispose_engines()  # the server process opens the file on its own
    policy = args.policy
    if policy is None:
        from alignment.model_init import init_model
        from alignment.quiet import quiet_libraries

        quiet_libraries()
        print(f"building the embedded model (preset {args.preset!r}, random weights) ...", flush=True)
        policy = str(init_model(workdir / "model", preset=args.preset, seed=0))
    return db, policy, keys, [p for _, p in tests], [t for t, _ in tests]


def serve_setups(args: argparse.Namespace) -> None:
    body = {"model": MODEL, "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        workdir = Path(tmp)
        db, policy, keys, prompts, task_ids = prepare(workdir, args)
        setups = [("batched", []), ("one at a time", ["--max-batch-size", "1"])]
        if not args.no_int8:
            setups.append(("int8", ["--quantize", "int8", "--device", "cpu"]))
        pass_tasks = task_ids[: args.pass_tasks]
        loads, verdicts = {}, {}
        print(
            f"{args.clients} clients x {args.requests} requests, max_tokens {args.max_tokens}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start",
            flush=True,
        )
        for label, extra in setups:
            server = Server(db, policy, workdir, [*extra, *args.server_arg])
            try:
                loads[label] = asyncio.run(run_load(server.url, keys, prompts, args.requests, body))
                print(loads[label].line(label), flush=True)
                if label != "one at a time" and pass_tasks:
                    verdicts[label] = asyncio.run(
                        greedy_verdicts(server.url, keys[0], pass_tasks, args.pass_max_tokens)
                    )
            finally:
                server.stop()
            for error in loads[label].errors[:3]:
                print(f"  error: {error}")
        speedup = loads["batched"].rps / loads["one at a time"].rps if loads["one at a time"].rps else 0.0
        verdict = "met" if speedup >= GOAL_SPEEDUP else "NOT met"
        print(
            f"batching speedup at {args.clients} clients: {speedup:.1f}x the requests/s of one at a time "
            f"(goal >= {GOAL_SPEEDUP:.0f}x: {verdict})"
        )
        bound = generate_bound(policy, prompts, args.clients, args.max_tokens)
        print(
            f"the model alone, every row {args.max_tokens} tokens: one generate call of {args.clients} rows = "
            f"{bound:.1f}x the throughput of {args.clients} calls of one"
        )
        if "int8" in loads:
            base, int8 = loads["batched"], loads["int8"]
            p50 = statistics.median(int8.latencies) / statistics.median(base.latencies)
            print(f"int8 vs float: p50 latency x{p50:.2f}, requests/s x{int8.rps / base.rps:.2f}")
        if "int8" in verdicts:
            same = sum(a[1] == b[1] for a, b in zip(verdicts["batched"], verdicts["int8"]))
            for label in ("batched", "int8"):
                passed = sum(p for p, _ in verdicts[label])
                name = "float" if label == "batched" else "int8"
                print(f"greedy pass@1 ({name}): {passed}/{len(pass_tasks)} = {passed / len(pass_tasks):.3f}")
            print(f"identical greedy completions float vs int8: {same}/{len(pass_tasks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--preset", default="tiny", help="the embedded model's preset (configs/model/)")
    parser.add_argument("--policy", help="serve this model directory instead of building one")
    parser.add_argument("--pass-tasks", type=int, default=32, help="basic test tasks for pass@1 (0: none)")
    parser.add_argument("--pass-max-tokens", type=int, default=128)
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 setup")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="passed to every `codealign serve` (repeatable)"
    )
    parser.add_argument("--url", help="load a running server instead (with --key and --model)")
    parser.add_argument("--key")
    parser.add_argument("--model")
    args = parser.parse_args()
    if args.clients < 1 or args.requests < 1:
        parser.error("--clients and --requests must be positive")
    if args.url is None:
        serve_setups(args)
        return
    if not (args.key and args.model):
        parser.error("--url needs --key and --model")
    prompts = [t.prompt for t in builtin_suite("basic") if t.split == "test"]
    body = {"model": args.model, "max_tokens": args.max_tokens}
    load = asyncio.run(run_load(args.url, [args.key] * args.clients, prompts, args.requests, body))
    print(load.line(args.url))
    for error in load.errors[:3]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
