"""Trim what the heavy libraries print to what a codealign user acts on.

Called first by every command that loads a model (train, sample, eval --policy, quickstart). Kept: errors, the
trainer's own step bar and metrics, our progress bars. Dropped: DeepSpeed's "Setting accelerator to CPU" notice
(printed on *stdout* at import on every GPU-less machine), transformers' info/warning chatter and its
per-file loading/saving bars, and the datasets ``map`` bars TRL shows for every preprocessing step.
"""

from __future__ import annotations

import logging

_done = False


class _DropCpuAcceleratorNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Setting accelerator to CPU")


def quiet_libraries() -> None:
    """Idempotent; call before the first import of deepspeed (a logger filter survives its set-up)."""
    global _done
    if _done:
        return
    _done = True
    # deepspeed's LoggerFactory resets the level of its "DeepSpeed" logger at import, but keeps filters.
    logging.getLogger("DeepSpeed").addFilter(_DropCpuAcceleratorNote())
    import datasets
    import transformers.utils.logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # loading/writing shards; the Trainer's step bar is separate and stays
