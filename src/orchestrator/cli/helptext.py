"""Help without internal type labels: an argument shows its name (`TYPE`,
not `TYPE <str>`; `TYPE` in the usage line, not `{TYPE}`), an option its
metavar or its choices (`--input JSON`, `--output table|json`), a flag
nothing (not `--help <bool>`).

Typer builds the parameters from the commands' signatures with classes of its
own and has no setting for this, so the root group, once built, moves each
parameter of the tree to a subclass that changes only how it is shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

if TYPE_CHECKING:
    from typer._click import Context

# What a value option without a metavar of its own takes, by its type.
_VALUE_NAMES: dict[Any, str] = {int: "N", float: "NUMBER"}


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Context) -> list[str]:
        name = self.display_name_raw
        shown = name if self.required else f"[{name}]"
        return [shown + ("..." if self.nargs != 1 else "")]


class _Option(TyperOption):
    def display_type_rich(self, ctx: Context) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        described = self.type_descriptor
        if described.is_choice:
            return self.display_type(ctx).removeprefix("<").removesuffix(">")
        return _VALUE_NAMES.get(described.annotation, "FILE" if described.is_path else "TEXT")


class Commands(TyperGroup):
    """The root group: every command under it shows its help as above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain(self)


def _plain(command: Any) -> None:
    # The help option is made on first use: make it now, so it moves too.
    command.get_help_option(typer.Context(command))
    help_option = getattr(command, "_help_option", None)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif type(param) is TyperOption:
            param.__class__ = _Option
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)
