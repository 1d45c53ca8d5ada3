"""``codealign benchmark`` (``make benchmark``): every method over several seeds (:mod:`alignment.benchmark`).

Examples::

    codealign benchmark                                  # configs/benchmark.yaml: 3 seeds -> runs/benchmark
    codealign benchmark 'seeds=[0]' quickstart.eval_limit=50

Each seed gets its own directory and SQLite database under ``output_dir`` (``--db`` is not used).
"""

from __future__ import annotations

from codealign.flags import add_overrides


def register(parser) -> None:
    parser.add_argument("--config", default="configs/benchmark.yaml", help="YAML for BenchmarkConfig")
    add_overrides(parser, "overrides (quickstart.<field> reaches the quickstart's config)")
    parser.set_defaults(run=_benchmark)


def _benchmark(args, db) -> int:
    from alignment.benchmark import BenchmarkConfig, format_benchmark, run_benchmark
    from alignment.quiet import quiet_libraries
    from codealign.config import load_config

    quiet_libraries()
    summary = run_benchmark(load_config(BenchmarkConfig, args.config, args.overrides))
    print(format_benchmark(summary))
    return 0
