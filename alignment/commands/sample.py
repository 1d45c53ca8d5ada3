"""``codealign sample``: K completions per task from a policy into the database (:mod:`alignment.sample`).

Examples::

    codealign sample --policy runs/quickstart/sft --split train --k 8
    codealign sample --policy quickstart-sft --source basic --split pool --k 4 --temperature 1.0 --limit 100
    codealign score                                   # then: execution + static results for new completions
"""

from __future__ import annotations

from codealign.flags import Flag

FLAGS = [
    Flag("--policy", "policy", "policy name or model directory", metavar="NAME|DIR"),
    Flag("--source", "source", "task suite"),
    Flag("--split", "split", "train | test | pool"),
    Flag("--limit", "limit", "only the first N tasks (by id)", metavar="N"),
    Flag("--k", "k", "completions per task", metavar="K"),
    Flag("--temperature", "sampling.temperature", "0 = greedy", metavar="T"),
    Flag("--top-p", "sampling.top_p", "nucleus sampling", metavar="P"),
    Flag("--max-new-tokens", "sampling.max_new_tokens", "tokens per completion at most", metavar="N"),
    Flag("--seed", "sampling.seed", "sampling seed", metavar="S"),
    Flag("--batch-size", "batch_size", "sequences per generate call", metavar="N"),
]


def register(parser) -> None:
    from alignment.sample import SampleConfig
    from codealign.flags import add_config_arguments

    add_config_arguments(parser, SampleConfig, FLAGS)
    parser.set_defaults(run=_sample)


def _sample(args, db) -> int:
    from alignment.quiet import quiet_libraries
    from alignment.sample import SampleConfig, sample_to_db
    from codealign.errors import UserError
    from codealign.flags import config_from_args

    cfg = config_from_args(SampleConfig, args, FLAGS)
    if not cfg.policy:
        raise UserError("--policy is required (a policy name or a model directory)")
    quiet_libraries()
    result = sample_to_db(
        db, cfg.policy, cfg.source, cfg.split, cfg.k, cfg.sampling, cfg.limit, cfg.batch_size
    )
    print(
        f"{result.created} new completions ({result.reused} already there) for {result.tasks} tasks, "
        f"policy '{result.policy_name}' (id {result.policy_id}), sampling key {result.sampling_key}"
    )
    return 0
