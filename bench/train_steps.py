"""Seconds per optimizer step of each TRL stage (SFT, reward model, DPO, GRPO) on this machine's CPU.

    .venv/bin/python bench/train_steps.py                       # fresh `tiny` model, 6 steps per stage
    .venv/bin/python bench/train_steps.py --model runs/quickstart/sft --steps 10 --stages dpo,grpo

Tasks come from the ``basic`` generator (no imported suite needed); preference pairs are reference solution
(chosen) vs. ``return None`` (rejected), written as an export file, so the bench needs no sampling. A
temporary SQLite DB holds the run registry. Batch sizes are the shipped configs' (configs/*.yaml). The first
step of each stage (warm-up, allocation) is excluded from the mean. Prints the load average it ran under,
because other work on the machine changes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pairs_file(directory: Path, n: int) -> Path:
    from codealign.tasks.basic import generate_suite

    tasks = [t for t in generate_suite(0) if t.split == "train"][:n]
    path = directory / "preferences.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": t.prompt,
                    "chosen": t.reference_solution,
                    "rejected": "    return None\n",
                    "task_id": t.task_id,
                }
            )
            + "\n"
            for t in tasks
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model dir (default: a fresh `tiny` preset model)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--stages", default="sft,reward,dpo,grpo")
    args = parser.parse_args()

    from transformers import TrainerCallback

    from alignment.model_init import init_model
    from alignment.stages import stage_config_class, train_stage
    from codealign.config import load_config
    from db.migrate import upgrade
    from db.session import Database

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.start)

    import transformers

    original_init = transformers.Trainer.__init__

    def init_with_timer(self, *a, **k):  # every TRL trainer subclasses Trainer: add the timer to all of them
        original_init(self, *a, **k)
        self.add_callback(StepTimer())

    transformers.Trainer.__init__ = init_with_timer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = Database.at(f"sqlite:///{tmp / 'bench.db'}")
        upgrade(db)
        model = args.model or str(init_model(tmp / "base", preset="tiny"))
        pairs = _pairs_file(tmp, 400)
        yaml_of = {"sft": "sft.yaml", "reward": "reward_model.yaml", "dpo": "dpo.yaml", "grpo": "grpo.yaml"}
        stage_extra = {
            "sft": {"tasks": {"load_from": "generator"}},
            "reward": {"pairs": {"source": "human", "human_export_dir": str(pairs)}, "eval_fraction": 0.0},
            "dpo": {"pairs": {"source": "human", "human_export_dir": str(pairs)}},
            "grpo": {"tasks": {"load_from": "generator"}},
        }
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; model {model}")
        for stage in args.stages.split(","):
            times.clear()
            overrides = {
                "model_name_or_path": model,
                "output_dir": str(tmp / stage),
                "max_steps": args.steps,
                "save_strategy": "no",
                "report_to": ["none"],
                "logging_steps": 1,
                **stage_extra[stage],
            }
            cfg = load_config(stage_config_class(stage), ROOT / "configs" / yaml_of[stage], overrides)
            start = time.perf_counter()
            train_stage(stage, cfg, db)
            total = time.perf_counter() - start
            steady = times[1:] or times
            batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
            print(
                f"{stage:7s} batch {batch:3d}: {statistics.mean(steady):.2f} s/step "
                f"(min {min(steady):.2f}, first {times[0]:.2f}); whole run incl. load/save {total:.1f} s"
            )
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
