"""What people type or point at: JSON input, passwords, workflow files. Each
problem is a UsageError (exit 2) that names what to fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from orchestrator.cli.exits import UsageError
from orchestrator.client import WorkflowSpec, parse_workflow
from orchestrator.errors import InvalidArgument


def json_object(text: str, option: str = "--input") -> dict[str, Any]:
    """A JSON object given inline, as @FILE, or as - (stdin)."""
    source = option
    if text == "-":
        text, source = sys.stdin.read(), f"{option} (stdin)"
    elif text.startswith("@"):
        path = Path(text[1:])
        source = f"{option} {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{source}: cannot read it: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--label {text!r}: expected KEY=VALUE")
    return key, value


def password(from_stdin: bool, *, confirm: bool) -> str:
    """From stdin (the first line, newline dropped) or a hidden prompt."""
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise UsageError("--password-stdin: stdin is empty; pipe the password in")
        return secret
    try:
        typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    except typer.Abort:
        raise UsageError("no password given") from None
    return typed


def workflow_file(path: Path) -> WorkflowSpec:
    """A workflow file, YAML or JSON (JSON is YAML), shaped like
    CreateWorkflowRequest; InvalidArgument listing its problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{path} is not valid YAML or JSON{at}: {problem}") from None
    try:
        return parse_workflow(data)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path} is not a valid workflow", exc.violations) from None
