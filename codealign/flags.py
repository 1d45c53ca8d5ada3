"""The command line in front of typed configs: ``--config FILE.yaml``, ``KEY=VALUE`` overrides, and flags that
each set one config field.

A config-driven command declares its flags as :class:`Flag` s naming the field they set; their defaults are
the dataclass's (shown in ``--help``), so a default lives in one place whichever way a value arrives.
Precedence: dataclass defaults < ``--config`` YAML < flags and ``KEY=VALUE`` overrides.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from codealign.config import load_config, merge_dicts, parse_overrides

T = TypeVar("T")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.-]*=")


def add_overrides(parser, help: str = "config overrides (dotted keys reach nested sections)") -> None:
    """The ``KEY=VALUE ...`` positional of a config-driven command. The CLI also collects ``KEY=VALUE`` words
    written after other options into it (argparse would call them unrecognized), so
    ``codealign train dpo --config c.yaml --accelerate a.yaml max_steps=1`` works as it reads."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
    parser.set_defaults(takes_overrides=True)


def is_override(word: str) -> bool:
    return bool(_OVERRIDE.match(word))


@dataclass(frozen=True)
class Flag:
    """``--temperature`` sets field ``sampling.temperature``; :meth:`switch` makes a flag without a value."""

    flag: str
    field: str
    help: str = ""
    metavar: str | None = None
    const: Any = None  # with is_switch: the value the bare flag sets
    is_switch: bool = False
    aliases: tuple[str, ...] = ()  # more names for the same flag (a drop-in's spelling, e.g. --problem_file)

    @classmethod
    def switch(cls, flag: str, field: str, help: str, value: Any) -> Flag:
        """A flag without a value that sets ``field`` to ``value`` (``--no-progress`` -> progress False)."""
        return cls(flag, field, help, const=value, is_switch=True)

    @property
    def dest(self) -> str:
        return "flag_" + self.field.replace(".", "__")


def field_default(cls: type, dotted: str) -> Any:
    """The default of a (nested) dataclass field, e.g. ``field_default(EvalConfig, "sampling.seed")``."""
    value: Any = cls()
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _field_type(cls: type, dotted: str) -> Any:
    *parents, last = dotted.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    tp = typing.get_type_hints(cls)[last]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None: the flag gives an X
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def add_config_arguments(parser, cls: type, flags: Sequence[Flag], *, config_help: str | None = None) -> None:
    """``--config``, the ``flags`` (typed from the fields, defaults from the dataclass) and ``KEY=VALUE``."""
    parser.add_argument("--config", metavar="FILE.yaml", help=config_help or f"YAML for {cls.__name__}")
    for flag in flags:
        default = field_default(cls, flag.field)
        names = (flag.flag, *flag.aliases)
        if flag.is_switch:
            parser.add_argument(
                *names, dest=flag.dest, action="store_const", const=flag.const, help=flag.help
            )
            continue
        tp = _field_type(cls, flag.field)
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default {default})"
        parser.add_argument(
            *names,
            dest=flag.dest,
            type=tp if tp in (int, float, str) else str,
            default=None,
            metavar=flag.metavar or flag.flag.lstrip("-").upper().replace("-", "_"),
            help=f"{flag.help}{shown}",
        )
    add_overrides(parser)


def config_from_args(cls: type[T], args, flags: Sequence[Flag]) -> T:
    """The config the command line describes (see the module docstring for precedence)."""
    given: dict[str, Any] = {}
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if value is not None:
            node = given
            *parents, last = flag.field.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    extra = parse_overrides(getattr(args, "overrides", None))
    return load_config(cls, getattr(args, "config", None), merge_dicts(given, extra))
