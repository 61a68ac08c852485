"""Workflow definitions from plain data (a YAML or JSON file), shaped like
CreateWorkflowRequest:

    name: etl
    description: optional
    definition:
      nodes:
        - {id: extract, type: echo, input: {rows: 3}}
        - {id: load, type: echo, input_expression: "{'rows': nodes.extract.output.rows}",
           concurrency_key_expression: "input.customer", concurrency_limit: 2,
           rate_limit_bucket_expression: "'warehouse'", rate_limit: 5, rate_limit_period: second}
      edges:
        - {source: extract, target: load}

Every problem is reported at once, one field violation each, the way the
server reports its own; fields may also be spelled as in proto JSON
(`inputExpression`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import ConcurrencyStrategy, Definition, EdgeSpec, NodeSpec

_TOP = {"name": str, "description": str, "definition": dict}
_DEFINITION = {"nodes": list, "edges": list}
_NODE = {
    "id": str,
    "type": str,
    "input": dict,
    "input_expression": str,
    "max_attempts": int,
    "timeout_seconds": int,
    "description": str,
    "concurrency_key_expression": str,
    "concurrency_limit": int,
    "concurrency_strategy": str,
    "rate_limit_bucket_expression": str,
    "rate_limit": int,
    "rate_limit_period": str,
}
_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
_EDGE = {"source": str, "target": str, "condition": str}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


@dataclass(frozen=True)
class WorkflowSpec:
    """A workflow before it is stored: what CreateWorkflow takes."""

    name: str
    definition: Definition
    description: str = ""


def parse_workflow(data: Any) -> WorkflowSpec:
    """`{name, description?, definition: {nodes, edges}}` as a WorkflowSpec;
    InvalidArgument listing every problem."""
    problems: list[FieldViolation] = []
    top = _fields(data, _TOP, "", problems)
    if top is not None:
        for required in ("name", "definition"):
            if required not in top:
                problems.append(FieldViolation(required, "is required"))
    definition = _definition(top.get("definition") if top else None, "definition", problems)
    if problems or top is None or definition is None:
        raise InvalidArgument(violations=problems)
    return WorkflowSpec(top["name"], definition, top.get("description", ""))


def definition_from_dict(data: Any) -> Definition:
    """`{nodes: [...], edges: [...]}` as a Definition; InvalidArgument
    listing every problem."""
    problems: list[FieldViolation] = []
    definition = _definition(data, "definition", problems)
    if problems or definition is None:
        raise InvalidArgument(violations=problems)
    return definition


def _definition(data: Any, where: str, problems: list[FieldViolation]) -> Definition | None:
    if data is None:
        return None
    found = _fields(data, _DEFINITION, where, problems)
    if found is None:
        return None
    nodes = []
    for index, item in enumerate(found.get("nodes", [])):
        node = _fields(item, _NODE, f"{where}.nodes[{index}]", problems)
        if node is not None:
            _limits(node, f"{where}.nodes[{index}]", problems)
            nodes.append(NodeSpec(**{"id": "", "type": "", **node}))
    edges = []
    for index, item in enumerate(found.get("edges", [])):
        edge = _fields(item, _EDGE, f"{where}.edges[{index}]", problems)
        if edge is not None:
            edges.append(EdgeSpec(**{"source": "", "target": "", **edge}))
    return Definition(tuple(nodes), tuple(edges))


def _limits(node: dict[str, Any], where: str, problems: list[FieldViolation]) -> None:
    """A node's strategy (`queue`, `cancel_newest`, `cancel_oldest`) and
    period (`second`, `minute`, `hour`) by name, in the model's terms."""
    strategy = node.pop("concurrency_strategy", None)
    if strategy is not None:
        try:
            node["concurrency_strategy"] = ConcurrencyStrategy(strategy.upper().replace("-", "_"))
        except ValueError:
            names = ", ".join(s.value.lower() for s in ConcurrencyStrategy)
            problems.append(
                FieldViolation(f"{where}.concurrency_strategy", f"{strategy!r}: name one: {names}")
            )
    period = node.pop("rate_limit_period", None)
    if period is not None:
        if period.lower() in _PERIOD_SECONDS:
            node["rate_limit_period_seconds"] = _PERIOD_SECONDS[period.lower()]
        else:
            problems.append(
                FieldViolation(
                    f"{where}.rate_limit_period", f"{period!r}: name one: second, minute or hour"
                )
            )


def _fields(
    data: Any, expected: Mapping[str, type], where: str, problems: list[FieldViolation]
) -> dict[str, Any] | None:
    """`data`'s fields by their snake_case names, each of its expected type;
    None if `data` is not an object at all."""
    if not isinstance(data, Mapping):
        problems.append(FieldViolation(where or "(top)", f"must be an object, not {_kind(data)}"))
        return None
    found: dict[str, Any] = {}
    for key, value in data.items():
        name = _CAMEL.sub("_", str(key)).lower()
        path = f"{where}.{key}" if where else str(key)
        wanted = expected.get(name)
        if wanted is None:
            problems.append(
                FieldViolation(path, f"unknown field (expected one of: {', '.join(expected)})")
            )
        elif value is None:
            continue  # `description:` with nothing after it: as if absent
        elif not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            wanted_kind = _TYPE_NAMES[wanted]
            problems.append(FieldViolation(path, f"must be {wanted_kind}, not {_kind(value)}"))
        else:
            found[name] = value
    return found


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"
