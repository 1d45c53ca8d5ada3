"""PPO checkpoints: ``output_dir/checkpoint-<step>/`` every ``save_steps`` rollouts, and resuming from one.

A checkpoint is ``accelerator.save_state`` (actor + critic weights, optimizer, every process's RNG states; under
DeepSpeed the engine's own checkpoint, shards included) plus two registered objects: the LR scheduler and a
:class:`PPOProgress` (step, prompt queue, prompt-order and minibatch-order generators, running score moments,
KL coefficient, log history, training seconds so far). Continuing from checkpoint ``k`` therefore replays
steps ``k+1 ..`` as an uninterrupted run would (bit for bit on one CPU process; tested).

``trainer_state.json`` is written last: :func:`alignment.runs.last_checkpoint` only picks directories that
have it, so a save cut short by a kill is never resumed from. Older checkpoints beyond ``save_total_limit``
are deleted after each complete save (the newest are kept, as in Hugging Face ``Trainer``).

Not guaranteed: resuming with a different number of processes (the RNG states are per process) or after
changing the model, LoRA or critic settings; the weights in a checkpoint are in accelerate's training layout,
not a Hugging Face directory (the final policy in ``output_dir`` is).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codealign.errors import UserError

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


@dataclass
class PPOProgress:
    """The run's state outside model, optimizer and scheduler; ``state_dict`` makes accelerate save it."""

    kl: Any  # ppo_core.AdaptiveKLController
    moments: Any  # ppo_core.RunningMoments
    order_rng: Any  # torch.Generator: prompt order, the same on every process (they split one global batch)
    shuffle_rng: Any  # torch.Generator: minibatch order of the PPO epochs
    step: int = 0  # rollouts done
    queue: list[int] = field(default_factory=list)  # task indices of the current pass not yet used
    log_history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds up to ``step``, summed over resumed segments

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "queue": list(self.queue),
            "log_history": self.log_history,
            "elapsed": self.elapsed,
            "kl_coef": self.kl.value,
            "moments": {"mean": self.moments.mean, "var": self.moments.var, "count": self.moments.count},
            "order_rng": self.order_rng.get_state(),
            "shuffle_rng": self.shuffle_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.queue, self.elapsed = state["step"], list(state["queue"]), state["elapsed"]
        self.log_history = list(state["log_history"])
        # Only the coefficient moved; target and horizon stay the config's.
        self.kl.value = state["kl_coef"]
        for name, value in state["moments"].items():
            setattr(self.moments, name, value)
        self.order_rng.set_state(state["order_rng"])
        self.shuffle_rng.set_state(state["shuffle_rng"])


def new_progress(cfg) -> PPOProgress:
    """The state of a run that has not started (``cfg`` is a ``PPORecipeConfig``)."""
    import torch

    from alignment.ppo_core import AdaptiveKLController, RunningMoments

    return PPOProgress(
        kl=AdaptiveKLController(cfg.kl_coef, cfg.adaptive_kl_target, cfg.adaptive_kl_horizon),
        moments=RunningMoments(),
        order_rng=torch.Generator().manual_seed(cfg.seed),
        shuffle_rng=torch.Generator().manual_seed(cfg.seed + 1),
    )


def should_save(step: int, save_steps: int | None, max_steps: int) -> bool:
    """Every ``save_steps`` rollouts and at the last one (so a rerun with a larger ``max_steps`` continues)."""
    return bool(save_steps) and (step % save_steps == 0 or step == max_steps)


def write_trainer_state(directory: Path, log_history: list[dict], step: int, elapsed: float) -> None:
    """``trainer_state.json`` as transformers writes it, readable while the run goes on."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {"global_step": step, "log_history": log_history, "train_runtime": round(elapsed, 2)}
    (directory / TRAINER_STATE).write_text(json.dumps(state, indent=1) + "\n")


def save_checkpoint(
    accelerator, output_dir: Path, progress: PPOProgress, save_total_limit: int | None
) -> Path:
    """Write ``checkpoint-<step>`` (all processes call this) and prune the oldest beyond the limit."""
    path = output_dir / f"checkpoint-{progress.step}"
    if accelerator.is_main_process and (path / TRAINER_STATE).exists():
        # a leftover from before a resume: the directory is incomplete until the end of this save
        (path / TRAINER_STATE).unlink()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_trainer_state(path, progress.log_history, progress.step, progress.elapsed)
        if save_total_limit is not None:
            for old in complete_checkpoints(output_dir)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator, path: str) -> None:
    """Restore what :func:`save_checkpoint` wrote into the prepared model, optimizer and registered objects."""
    try:
        accelerator.load_state(path)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a PPO checkpoint of this setup ({first}); delete it or set resume=false"
        ) from None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """``checkpoint-N`` directories that hold ``trainer_state.json``, oldest first."""
    found = []
    for child in output_dir.iterdir() if output_dir.is_dir() else []:
        match = _CHECKPOINT_DIR.match(child.name)
        if match and (child / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]
