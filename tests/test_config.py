"""The typed config loader: precedence, unknown keys, types, TRL pass-through."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from codealign.config import ConfigError, load_config, trl_kwargs


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])


@dataclass
class Stage:
    model_name_or_path: str = "base"
    learning_rate: float = 1e-4
    num_train_epochs: int = 1
    use_peft: bool = False
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    mode: str | None = None
    optim: Optim = field(default_factory=Optim)
    trl_extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.num_train_epochs < 1:
            raise ValueError("num_train_epochs must be >= 1")


def _yaml(tmp_path, text):
    path = tmp_path / "stage.yaml"
    path.write_text(text)
    return path


def test_defaults_then_yaml_then_cli(tmp_path):
    path = _yaml(tmp_path, "learning_rate: 3e-4\nnum_train_epochs: 2\noptim:\n  lr: 0.1\n")
    cfg = load_config(Stage, path)
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.optim.lr, cfg.model_name_or_path) == (
        3e-4,
        2,
        0.1,
        "base",
    )
    cfg = load_config(Stage, path, ["num_train_epochs=5", "optim.lr=0.5", "loss_type=sigmoid,sft"])
    assert (cfg.num_train_epochs, cfg.optim.lr, cfg.learning_rate) == (5, 0.5, 3e-4)
    assert cfg.loss_type == ["sigmoid", "sft"]
    assert cfg.optim.betas == [0.9, 0.99]


def test_partial_section_keeps_the_fields_own_defaults(tmp_path):
    @dataclass
    class WithCustomDefault:
        optim: Optim = field(default_factory=lambda: Optim(lr=0.5, betas=[0.1, 0.2]))

    cfg = load_config(WithCustomDefault, _yaml(tmp_path, "optim:\n  lr: 0.7\n"))
    assert cfg.optim.lr == 0.7 and cfg.optim.betas == [0.1, 0.2]
    assert load_config(WithCustomDefault, None, ["optim.betas=0.3,0.4"]).optim.lr == 0.5


def test_unknown_key_names_key_file_and_closest(tmp_path):
    path = _yaml(tmp_path, "learning_rte: 1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_config(Stage, path)
    message = str(err.value)
    assert "learning_rte" in message and str(path) in message and "learning_rate" in message


def test_unknown_nested_and_cli_keys(tmp_path):
    with pytest.raises(ConfigError, match="optim.*'lrr'.*'lr'"):
        load_config(Stage, _yaml(tmp_path, "optim:\n  lrr: 1\n"))
    with pytest.raises(ConfigError, match="command line.*'epochs'"):
        load_config(Stage, None, ["epochs=3"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("num_train_epochs: two\n", "num_train_epochs.*integer"),
        ("use_peft: 3\n", "use_peft.*true/false"),
        ("optim: 5\n", "optim.*mapping"),
        ("num_train_epochs: 0\n", "num_train_epochs must be >= 1"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(Stage, _yaml(tmp_path, text))
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Stage, tmp_path / "nope.yaml")


def test_trl_kwargs_passes_shared_names_and_checks_extra():
    @dataclass
    class FakeTRLConfig:
        learning_rate: float = 0.0
        num_train_epochs: int = 0
        loss_type: list = None
        warmup_ratio: float = 0.0

    cfg = Stage(trl_extra={"warmup_ratio": 0.1})
    assert trl_kwargs(cfg, FakeTRLConfig) == {
        "learning_rate": 1e-4,
        "num_train_epochs": 1,
        "loss_type": ["sigmoid"],
        "warmup_ratio": 0.1,
    }
    with pytest.raises(ConfigError, match="warmup_rato.*warmup_ratio"):
        trl_kwargs(Stage(trl_extra={"warmup_rato": 0.1}), FakeTRLConfig)
