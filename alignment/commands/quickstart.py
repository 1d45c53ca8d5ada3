"""``codealign quickstart`` (``make quickstart``): the whole pipeline on the embedded model (:mod:`alignment.quickstart`).

Examples::

    codealign quickstart                                   # configs/quickstart.yaml, runs/quickstart, ./codealign.db
    codealign quickstart --output /tmp/qs --fresh          # start over in another directory
    codealign quickstart grpo.max_steps=50 eval_n=4        # overrides (dotted for the stage sections)
"""

from __future__ import annotations

from codealign.flags import add_overrides


def register(parser) -> None:
    parser.add_argument(
        "--config",
        default="configs/quickstart.yaml",
        help="quickstart YAML (default: configs/quickstart.yaml)",
    )
    parser.add_argument(
        "--output", help="output directory (default: the config's output_dir, runs/quickstart)"
    )
    parser.add_argument("--fresh", action="store_true", help="delete the output directory and start over")
    add_overrides(parser, "config overrides (dotted for stage sections)")
    parser.set_defaults(run=_quickstart)


def _quickstart(args, db) -> int:
    from alignment.quickstart import QuickstartConfig, run_quickstart
    from alignment.quiet import quiet_libraries
    from codealign.config import load_config

    quiet_libraries()
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    cfg = load_config(QuickstartConfig, args.config, overrides)
    result = run_quickstart(cfg, db, fresh=args.fresh)
    print(result.table)
    print(f"report: {result.output_dir / 'report' / 'index.html'}")
    from alignment.tracking import local_store, wants_mlflow

    if wants_mlflow(cfg.report_to):
        from alignment.quickstart.steps import mlflow_dir

        print(
            f"runs:   mlflow ui --backend-store-uri {local_store(mlflow_dir(result.output_dir))} --workers 1"
        )
    return 0
