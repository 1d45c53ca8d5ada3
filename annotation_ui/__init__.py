"""Human feedback for code: annotator ranking app, reviewer arena, agreement metrics and preference export.

Pure modules (no gradio import): ``users``, ``items``, ``assignment``, ``agreement``, ``quality``, ``arena``,
``export``, ``render``. Only ``app`` imports gradio, and only inside its builder. Nothing here imports
torch, transformers or trl.
"""
