"""One way for every stage to take its settings: a pydantic schema, an optional YAML file, flags built from both.

A stage declares its settings once, as a :class:`StageSettings` subclass whose fields carry their defaults and
their ``--help`` text (``description=``). :func:`add_flags` turns every field into a flag (``max_steps`` →
``--max-steps``; a ``bool`` gets ``--x/--no-x``; a ``Literal`` gets ``choices``) plus ``--config FILE``, and
:func:`settings_from_args` merges, lowest first: the defaults, ``--config FILE``, then the flags actually given.
A field annotated with :class:`Cli` can be positional, repeatable, renamed, or kept off the command line::

    class PrepareSettings(StageSettings):
        exports: Annotated[tuple[Path, ...], Cli(positional="+", metavar="EXPORT")] = Field(description=...)

Every bad value, from a flag or the file, is one line naming the flag: ``doppel prepare: --max-tokens: ...``.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from doppel.errors import InputError

CONFIG_DEST = "config"


@dataclass(frozen=True)
class Cli:
    """How one settings field appears on the command line (``Annotated[type, Cli(...)]``)."""

    positional: Literal["?", "*", "+"] | None = None  # a positional argument: its argparse nargs
    metavar: str | None = None
    flag: str | None = None  # another flag name than ``--field-name``
    append: bool = False  # repeatable: each use adds one value
    hidden: bool = False  # settable from code and the config file, but no flag (e.g. a test's worker count)
    default_help: str | None = None  # how the default reads in --help, where the value itself reads badly
    parse: Callable[[str], Any] | None = None  # argparse ``type=``: its ArgumentTypeError is a usage error


class StageSettings(BaseModel):
    """Base of every stage's settings: unknown keys are refused, values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_mapping(cls, values: dict[str, Any], origin: str = "") -> Self:
        """Validate ``values``; a bad one raises :class:`InputError` naming its flag (after ``origin``), on one line."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{flag_name(cls, str(issue['loc'][0])) if issue['loc'] else '?'}: {_reason(issue['msg'])}"
                for issue in error.errors()
            )
            raise InputError(f"{origin}: {problems}" if origin else problems) from None

    @classmethod
    def read_yaml(cls, path: Path) -> dict[str, Any]:
        """The settings in a YAML file, unvalidated (an empty file holds none); unknown keys are refused."""
        import yaml  # here, not at the top: prepare's parent forks workers, and carries only what it needs

        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            reason = " ".join(str(error).split())
            raise InputError(f"{path}: unreadable config ({reason})") from None
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise InputError(f"{path}: a config file must be a mapping of setting: value")
        unknown = sorted(set(map(str, values)) - set(cls.model_fields))
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {', '.join(unknown)}")
        return values

    @classmethod
    def load_yaml(cls, path: Path) -> Self:
        """Complete settings from a YAML file (such as the ``config.yaml`` a run directory keeps)."""
        return cls.from_mapping(cls.read_yaml(path), origin=str(path))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def cli_of(field: FieldInfo) -> Cli:
    """The field's :class:`Cli` annotation, or the plain default."""
    return next((item for item in field.metadata if isinstance(item, Cli)), Cli())


def flag_name(schema: type[BaseModel], field: str) -> str:
    """How a field is named on the command line: ``max_steps`` → ``--max-steps``, a positional → its metavar."""
    info = schema.model_fields.get(field)
    cli = cli_of(info) if info is not None else Cli()
    if cli.positional:
        return cli.metavar or field.upper()
    return cli.flag or "--" + field.replace("_", "-")


def add_stage(
    subparsers: Any,
    stage: str,
    schema: type[StageSettings],
    *,
    help: str,
    description: str,
    handler: Callable[..., int],
) -> argparse.ArgumentParser:
    """The ``doppel STAGE`` subcommand: a flag per field of ``schema``, ``--config FILE``, and its handler."""
    parser = subparsers.add_parser(
        stage,
        help=help,
        description=description,
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    add_flags(parser, schema)
    parser.set_defaults(handler=handler, stage=stage)
    return parser


def add_flags(parser: argparse.ArgumentParser, schema: type[StageSettings], *, config_file: bool = True) -> None:
    """One flag per field of ``schema`` (and ``--config FILE``); unset flags stay absent from the namespace.

    The parser must be built with ``argument_default=argparse.SUPPRESS``, so that a flag not given cannot
    override the config file with a default.
    """
    if parser.argument_default is not argparse.SUPPRESS:
        raise ValueError("build the parser with argument_default=argparse.SUPPRESS")
    if config_file:
        parser.add_argument(
            "--config", dest=CONFIG_DEST, type=Path, metavar="FILE", help="YAML file of settings; flags override it"
        )
    for name, field in schema.model_fields.items():
        cli = cli_of(field)
        if cli.hidden:
            continue
        help_text = (field.description or "") + _default_text(field, cli)
        parse = {"type": cli.parse} if cli.parse is not None else {}
        if cli.positional:
            metavar = cli.metavar or name.upper()
            parser.add_argument(name, nargs=cli.positional, metavar=metavar, help=help_text, **parse)
            continue
        flag = flag_name(schema, name)
        if _is_bool(field.annotation):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        elif cli.append:
            metavar = cli.metavar or "VALUE"
            parser.add_argument(flag, dest=name, action="append", metavar=metavar, help=help_text, **parse)
        else:
            choices = _literal_choices(field.annotation)
            metavar = None if choices else cli.metavar or "N"
            parser.add_argument(flag, dest=name, choices=choices, metavar=metavar, help=help_text, **parse)


def given_values(args: argparse.Namespace, schema: type[StageSettings]) -> dict[str, Any]:
    """The settings the command line gave: ``--config FILE``'s, overridden by the flags actually used."""
    from_file = schema.read_yaml(getattr(args, CONFIG_DEST)) if getattr(args, CONFIG_DEST, None) else {}
    flags = {name: getattr(args, name) for name in schema.model_fields if getattr(args, name, None) is not None}
    return {**from_file, **flags}


def _default_text(field: FieldInfo, cli: Cli) -> str:
    if cli.default_help is not None:
        return f" (default: {cli.default_help})".replace("%", "%%")
    default = field.default
    if field.is_required() or default is None or cli.positional or (isinstance(default, bool) and not default):
        return ""
    if isinstance(default, list | tuple):
        if not default:
            return ""
        default = ",".join(map(str, default))
    return f" (default: {default})".replace("%", "%%")


def _reason(message: str) -> str:
    """pydantic's message without its "Value error, " prefix: the validator's own words are the reason."""
    return message.removeprefix("Value error, ")


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _literal_choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return None
