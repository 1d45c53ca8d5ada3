"""codealign training side: task suites, configs, recipes (SFT, reward model, DPO, GRPO, PPO), evaluation.

Importing this package is cheap; torch/transformers/trl are imported inside the recipes that need them.
"""
