"""The one settings pattern: a schema becomes flags and YAML keys; flags beat the file, the file beats defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from doppel.errors import InputError
from doppel.settings import Cli, StageSettings, add_flags, flag_name, given_values


class Example(StageSettings):
    source: Annotated[Path, Cli(positional="?", metavar="SOURCE")] = Field(description="what to read")
    max_steps: int = Field(10, ge=1, description="how many steps")
    mode: Literal["fast", "slow"] = Field("fast", description="how to run")
    verbose: bool = Field(False, description="say more")
    tags: Annotated[tuple[str, ...], Cli(append=True, metavar="TAG")] = Field((), description="labels")
    secret: Annotated[int, Cli(hidden=True)] = Field(0, description="set from code only")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_flags(parser, Example)
    return parser.parse_args(argv)


def test_every_visible_field_is_a_flag_named_after_it() -> None:
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    add_flags(parser, Example)
    help_text = parser.format_help()
    for flag in ("--config FILE", "--max-steps N", "--mode {fast,slow}", "--verbose, --no-verbose", "--tags TAG"):
        assert flag in help_text
    assert "how many steps (default: 10)" in help_text
    assert "--secret" not in help_text
    assert flag_name(Example, "source") == "SOURCE" and flag_name(Example, "max_steps") == "--max-steps"


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("max_steps: 5\nmode: slow\ntags: [a, b]\n", encoding="utf-8")
    values = given_values(parse(["in.txt", "--config", str(config), "--max-steps", "7"]), Example)
    settings = Example.from_mapping(values)
    assert (settings.source, settings.max_steps, settings.mode, settings.tags) == (
        Path("in.txt"),
        7,
        "slow",
        ("a", "b"),
    )
    assert Example.from_mapping(given_values(parse(["x"]), Example)).max_steps == 10


def test_a_flag_not_given_is_absent_so_it_cannot_mask_the_file() -> None:
    assert given_values(parse(["x", "--tags", "one", "--tags", "two"]), Example) == {
        "source": "x",
        "tags": ["one", "two"],
    }


def test_bad_values_are_one_line_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--max-steps: Input should be greater than or equal to 1$"):
        Example.from_mapping(given_values(parse(["x", "--max-steps", "0"]), Example))
    with pytest.raises(InputError, match=r"^doppel x: SOURCE: Field required$"):
        Example.from_mapping({}, origin="doppel x")
    config = tmp_path / "bad.yaml"
    config.write_text("max_step: 5\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.yaml: unknown setting\(s\) max_step$"):
        Example.read_yaml(config)
    config.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(InputError, match="must be a mapping"):
        Example.read_yaml(config)
    with pytest.raises(InputError, match="no such config file"):
        Example.read_yaml(tmp_path / "missing.yaml")


def test_settings_round_trip_through_yaml(tmp_path: Path) -> None:
    settings = Example(source=Path("in.txt"), max_steps=3, mode="slow", verbose=True, tags=("a",), secret=4)
    path = tmp_path / "saved.yaml"
    path.write_text(settings.to_yaml(), encoding="utf-8")
    assert Example.load_yaml(path) == settings


def test_the_parser_must_leave_unset_flags_out() -> None:
    with pytest.raises(ValueError, match="SUPPRESS"):
        add_flags(argparse.ArgumentParser(), Example)
