"""CLI subcommands of the annotation package; each module has ``register(parser)`` (see alignment/cli.py).

Top-level imports stay light (no gradio, datasets, matplotlib, numpy): they load inside the handlers.
"""
