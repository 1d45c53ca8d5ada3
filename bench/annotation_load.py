"""Load benchmark: N concurrent annotators x M submissions through the app's HTTP API, against SQLite.

The app runs as its own process (`codealign annotate`, as deployed); each simulated annotator logs in and
loops "submit ranking -> receive next item" as one HTTP POST to ``/gradio_api/run/submit``, the route the
browser page itself uses for that button. ``--think-ms`` adds a random (exponential) pause before each
submission; 0 (the default) is a closed-loop stress test with no human pause at all.
Prints p50/p95/p99 latency of submit+next, throughput, and the counts of lost rankings (acknowledged but
not in the DB) and duplicated ones (more than one row per item and annotator, or rows nobody was
acknowledged for). Goal (issue 4): p95 <= 150 ms, 0 lost, 0 duplicated.

    .venv/bin/python bench/annotation_load.py                       # 20 x 500, about 10 000 submissions
    .venv/bin/python bench/annotation_load.py --annotators 5 --submissions 40   # quick look
    .venv/bin/python bench/annotation_load.py --think-ms 2000    # annotators pausing 2 s on average
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_ui.app import refusal_reason
from annotation_ui.config import MAX_K
from annotation_ui.sample_data import free_port, prepare_demo_db
from db.session import Database

PASSWORD = "bench-password"
GOAL_P95_MS = 150.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def wait_until_up(url: str, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"app did not come up at {url}")


def annotator(
    url: str, name: str, submissions: int, think_s: float, latencies: list, acked: list, errors: list
) -> None:
    """One annotator: log in, then submit -> next, ``submissions`` times, over the page's own HTTP route."""
    session_hash = uuid.uuid4().hex
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            login = http.post("login", data={"username": name, "password": PASSWORD})
            login.raise_for_status()

            def call(api: str, data: list) -> list:
                response = http.post(
                    f"gradio_api/run/{api}", json={"data": data, "session_hash": session_hash}
                )
                if response.status_code != 200:
                    raise RuntimeError(f"{api}: HTTP {response.status_code}: {response.text[:200]}")
                data = response.json()["data"]
                if refusal_reason(data[-1]):  # a refusal is an HTTP 200 answer with the reason as status
                    raise RuntimeError(f"{api}: {refusal_reason(data[-1])}")
                return data

            state = call("current_item", [])
            for _ in range(submissions):
                if not state[0]:
                    errors.append(f"{name}: ran out of items")
                    return
                if think_s:
                    time.sleep(random.expovariate(1.0 / think_s))
                k = sum(isinstance(value, str) and 'class="ca-card"' in value for value in state)
                ranks = [str(1 + (i % k)) for i in range(k)] + [None] * (MAX_K - k)
                start = time.perf_counter()
                next_state = call("submit", [state[0], *ranks, "", ""])
                latencies.append(time.perf_counter() - start)
                acked.append((name, int(state[0])))
                state = next_state
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:  # reported, never hidden
        errors.append(f"{name}: {type(exc).__name__}: {exc}")


def count_rows(db, acked: list) -> tuple[int, int, int]:
    from sqlalchemy import func, select

    from db.models import Annotator, Ranking

    with db.session() as session:
        rows = session.execute(
            select(Annotator.name, Ranking.assignment_id).join(
                Annotator, Annotator.id == Ranking.annotator_id
            )
        ).all()
        per_key = session.execute(
            select(func.count()).select_from(Ranking).group_by(Ranking.item_id, Ranking.annotator_id)
        ).scalars()
        duplicated_keys = sum(n - 1 for n in per_key if n > 1)
    stored = {(name, aid) for name, aid in rows}
    lost = len(set(acked) - stored)
    unacknowledged = len(stored - set(acked))
    return len(rows), lost, duplicated_keys + unacknowledged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--submissions", type=int, default=500, help="per annotator")
    parser.add_argument("--k", type=int, default=2, help="completions per item")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each submission")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="codealign-load-"))
    db_url = f"sqlite:///{workdir / 'load.db'}"
    accounts = {f"annotator{i:02d}": "annotator" for i in range(args.annotators)}
    t0 = time.perf_counter()
    items = prepare_demo_db(
        Database.at(db_url),
        accounts=accounts,
        password=PASSWORD,
        tasks=args.submissions + 20,
        per_policy=2,
        k=args.k,
        required_annotations=args.annotators,
    )
    print(
        f"set-up: {items} items of k={args.k}, {args.annotators} annotators ({time.perf_counter() - t0:.1f} s)"
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server_log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alignment.cli",
            "--db",
            db_url,
            "annotate",
            "--no-build",
            "--port",
            str(port),
            f"k={args.k}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=server_log,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        wait_until_up(url)
        latencies: list[float] = []
        acked: list[tuple[str, int]] = []
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=annotator,
                args=(url, name, args.submissions, args.think_ms / 1000, latencies, acked, errors),
            )
            for name in accounts
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
        server_log.close()

    stored, lost, duplicated = count_rows(Database.at(db_url), acked)
    ms = sorted(1000 * x for x in latencies) or [float("nan")]
    p50, p95, p99 = (percentile(ms, q) for q in (0.50, 0.95, 0.99))
    print(f"annotators: {args.annotators}  think time: {args.think_ms:.0f} ms mean  k: {args.k}")
    print(
        f"submissions acknowledged: {len(acked)} / {args.annotators * args.submissions} in {wall:.1f} s "
        f"({len(acked) / wall:.1f}/s)"
    )
    print(
        f"submit+next latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {ms[-1]:.1f}  "
        f"mean {statistics.fmean(ms):.1f}"
    )
    print(f"rankings stored: {stored}  lost: {lost}  duplicated: {duplicated}  client errors: {len(errors)}")
    met = p95 <= GOAL_P95_MS and lost == 0 and duplicated == 0
    print(f"goal (p95 <= {GOAL_P95_MS:.0f} ms, 0 lost, 0 duplicated): {'met' if met else 'NOT met'}")
    for line in errors[:5]:
        print("  " + line)
    print(f"(db and server log in {workdir})")
    return 0 if not errors and lost == 0 and duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
