"""CEL expressions in workflows: compiled once, evaluated safely (no code
execution), with errors a person can act on.

Both kinds see `input` (the run's input) and `nodes.<id>.output`. JSON
numbers are doubles in CEL: `nodes.a.output.n + 1.0`, not `+ 1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

VARIABLES = frozenset({"input", "nodes"})
MAX_LENGTH = 4096
# `nodes.a` or `nodes["a"]`: the nodes an expression reads, so that
# validation can check they run before it.
# Looked for with string literals replaced by _s<n>_ placeholders, so that
# text inside a string is not taken for a reference.
_NODE_REFERENCE = re.compile(
    r"(?<![\w.])nodes\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*_s(\d+)_\s*\])"
)
# String literals, blanked out before looking for node references.
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


class ExpressionError(Exception):
    """An expression that does not compile or does not evaluate."""


@dataclass(frozen=True)
class Expression:
    source: str
    program: Any
    variables: frozenset[str]
    nodes: frozenset[str]

    def evaluate(self, context: dict[str, Any]) -> Any:
        try:
            return self.program.execute(context)
        except (TypeError, ValueError, RuntimeError, ArithmeticError, LookupError) as exc:
            message = str(exc).strip("'\"") or type(exc).__name__
            if isinstance(exc, KeyError):
                message = f"no such key: {message}"
            raise ExpressionError(f"{self.source!r}: {message}") from None


def compile_expression(source: str) -> Expression:
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ExpressionError(_first_lines(str(exc))) from None
    variables = frozenset(program.variables())
    unknown = sorted(variables - VARIABLES)
    if unknown:
        raise ExpressionError(
            f"unknown variable {unknown[0]!r}: expressions see only `input` and `nodes`"
        )
    return Expression(source, program, variables, _referenced_nodes(source))


def _referenced_nodes(source: str) -> frozenset[str]:
    literals: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        literals.append(match.group(0)[1:-1])
        return f"_s{len(literals) - 1}_"

    code = _STRING.sub(placeholder, source)
    return frozenset(
        dotted or literals[int(index)] for dotted, index in _NODE_REFERENCE.findall(code)
    )


def _first_lines(message: str) -> str:
    """cel's parse errors end with the source and a caret; keep the part
    that names the position."""
    return (
        " ".join(line.strip() for line in message.splitlines()[:1])
        .removeprefix("Failed to parse expression")
        .strip()
        or message
    )


def context(run_input: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"input": run_input, "nodes": {k: {"output": v} for k, v in outputs.items()}}
