"""PPO step time on CPU: rollout (sample + execute + forward passes) vs. update, at the quickstart's settings.

    .venv/bin/python bench/ppo_throughput.py                              # fresh tiny model, 5 steps
    .venv/bin/python bench/ppo_throughput.py --policy runs/quickstart/sft --steps 10 critic_backbone=shared

Prompts are the ``basic`` suite's pool split (generated, no DB needed besides a temporary one for the run
registry); the reward is the sandboxed execution reward. Extra ``key=value`` arguments override
``configs/quickstart.yaml``'s ``ppo`` section on top of ``configs/ppo.yaml``. Prints seconds per step for each
phase, sampled tokens per second and the PPO-updated tokens per second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="starting checkpoint (default: a fresh tiny model)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from alignment.ppo import PPORecipeConfig, train
    from codealign.config import load_config, parse_overrides, read_yaml
    from db.migrate import upgrade
    from db.session import Database

    work = Path(tempfile.mkdtemp(prefix="ppo_bench_"))
    db = Database.at(f"sqlite:///{work / 'bench.db'}")
    upgrade(db)
    policy = args.policy
    if policy is None:
        from alignment.model_init import init_model

        policy = str(init_model(work / "base", preset="tiny", seed=0))
    quickstart_ppo = read_yaml(REPO / "configs" / "quickstart.yaml").get("ppo") or {}
    overrides = {**quickstart_ppo, **parse_overrides(args.overrides)}
    overrides |= {
        "model_name_or_path": policy,
        "output_dir": str(work / "ppo"),
        "max_steps": args.steps,
        "report_to": ["none"],
        "tasks": {"dataset": "basic", "splits": ["pool"], "load_from": "generator"},
    }
    cfg = load_config(PPORecipeConfig, REPO / "configs" / "ppo.yaml", overrides)
    history = train(cfg, db).metrics["log_history"][1:]  # the first step pays for sandbox start-up
    rollout = statistics.mean(r["time/rollout_s"] for r in history)
    update = statistics.mean(r["time/update_s"] for r in history)
    tokens = statistics.mean(r["response_length"] for r in history) * cfg.rollout_batch_size
    print(
        f"ppo bench: {cfg.rollout_batch_size} answers/step, critic {cfg.critic_backbone}, "
        f"{cfg.num_ppo_epochs} epochs x {cfg.num_mini_batches} minibatches"
    )
    print(f"rollout {rollout:.2f} s/step ({tokens / rollout:.0f} sampled tokens/s incl. scoring and forward)")
    print(f"update  {update:.2f} s/step ({tokens * cfg.num_ppo_epochs / update:.0f} trained tokens/s)")
    print(
        f"total   {rollout + update:.2f} s/step, mean score {statistics.mean(r['objective/scores'] for r in history):.3f}"
    )


if __name__ == "__main__":
    main()
