"""Rewards for generated code: sandboxed execution, static signals, shaping, pass@k. Imports no torch.

Entry points: :func:`reward.execution.run_tests`, :func:`reward.pool.run_batch`,
:func:`reward.static.analyze_batch`, :func:`reward.rewards.make_combined_reward`,
:func:`reward.passk.pass_at_k`.
"""
