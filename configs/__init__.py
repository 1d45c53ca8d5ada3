"""The shipped YAML configs, installed as package data ``codealign.configs`` (see pyproject.toml).

Found through :func:`codealign.config.shipped_configs`, the same way from a checkout and from a wheel. Every
YAML here is loaded by ``tests/test_configs.py``.
"""
