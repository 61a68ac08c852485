"""Workflow definitions checked and compiled into a plan.

Every problem is reported at once, one field violation each, before anything
is stored: node ids, edges, cycles (naming the nodes on one), CEL that does
not compile (with its position) or reads nodes that do not run before it,
payloads and limits.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass, field

from orchestrator.engine.expressions import Expression, ExpressionError, compile_expression
from orchestrator.engine.validation import (
    MAX_ATTEMPTS,
    MAX_CONCURRENCY_LIMIT,
    MAX_RATE_LIMIT,
    MAX_TIMEOUT_SECONDS,
    PERIODS,
    payload_problem,
    type_problem,
)
from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import ConcurrencyStrategy, Definition, EdgeSpec, NodeSpec

MAX_NODES = 1000
MAX_EDGES = 5000
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")


@dataclass
class Plan:
    """A valid definition, ready to drive runs."""

    definition: Definition
    nodes: dict[str, NodeSpec]
    order: list[str]
    incoming: dict[str, list[int]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Expression] = field(default_factory=dict)
    conditions: dict[int, Expression] = field(default_factory=dict)
    # The expressions that name a node's concurrency key and rate bucket.
    concurrency_keys: dict[str, Expression] = field(default_factory=dict)
    rate_buckets: dict[str, Expression] = field(default_factory=dict)

    @property
    def roots(self) -> list[str]:
        return [n for n in self.order if not self.incoming.get(n)]

    def edge(self, index: int) -> EdgeSpec:
        return self.definition.edges[index]


class _Problems:
    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, field_name: str, description: str) -> None:
        self.found.append(FieldViolation(field_name, description))


def plan(definition: Definition, max_payload_bytes: int) -> Plan:
    """The plan of a valid definition; InvalidArgument listing every problem."""
    problems = _Problems()
    nodes = _check_nodes(definition, max_payload_bytes, problems)
    incoming, children = _check_edges(definition, nodes, problems)
    order, cycle = _topological(list(nodes), incoming, definition)
    if cycle:
        problems.add("definition.edges", "cycle: " + " → ".join([*cycle, cycle[0]]))
    result = Plan(definition, nodes, order, incoming, children)
    # With a cycle "upstream" means nothing: expressions are still compiled.
    _compile_expressions(result, None if cycle else _ancestors(result), problems)
    if problems.found:
        raise InvalidArgument(violations=problems.found)
    return result


def _check_nodes(
    definition: Definition, max_payload_bytes: int, problems: _Problems
) -> dict[str, NodeSpec]:
    if not definition.nodes:
        problems.add("definition.nodes", "a workflow needs at least one node")
    if len(definition.nodes) > MAX_NODES:
        problems.add("definition.nodes", f"at most {MAX_NODES} nodes")
    nodes: dict[str, NodeSpec] = {}
    first_index: dict[str, int] = {}
    for index, node in enumerate(definition.nodes):
        where = f"definition.nodes[{index}]"
        if not NODE_ID.match(node.id):
            problems.add(f"{where}.id", "1-128 letters, digits, _ or -, not starting with a digit")
        elif node.id in nodes:
            problems.add(
                f"{where}.id", f"duplicate node id {node.id!r} (also nodes[{first_index[node.id]}])"
            )
        else:
            nodes[node.id] = node
            first_index[node.id] = index
        if problem := type_problem(node.type):
            problems.add(f"{where}.type", problem)
        if problem := payload_problem(node.input, max_payload_bytes):
            problems.add(f"{where}.input", problem)
        if not 0 <= node.max_attempts <= MAX_ATTEMPTS:
            problems.add(f"{where}.max_attempts", f"must be in [0, {MAX_ATTEMPTS}]")
        if not 0 <= node.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            problems.add(f"{where}.timeout_seconds", f"must be in [0, {MAX_TIMEOUT_SECONDS}]")
        _check_limits(node, where, problems)
    return nodes


def _check_limits(node: NodeSpec, where: str, problems: _Problems) -> None:
    """A key expression needs its limit, a bucket expression its limit and
    period, and a limit, a strategy or a period its expression."""
    if node.concurrency_key_expression:
        if not 1 <= node.concurrency_limit <= MAX_CONCURRENCY_LIMIT:
            problems.add(
                f"{where}.concurrency_limit",
                f"must be in [1, {MAX_CONCURRENCY_LIMIT}] with a concurrency_key_expression",
            )
    elif node.concurrency_limit:
        problems.add(f"{where}.concurrency_limit", "needs a concurrency_key_expression")
    elif node.concurrency_strategy is not ConcurrencyStrategy.QUEUE:
        problems.add(f"{where}.concurrency_strategy", "needs a concurrency_key_expression")
    if node.rate_limit_bucket_expression:
        if not 1 <= node.rate_limit <= MAX_RATE_LIMIT:
            problems.add(
                f"{where}.rate_limit",
                f"must be in [1, {MAX_RATE_LIMIT}] with a rate_limit_bucket_expression",
            )
        if node.rate_limit_period_seconds not in PERIODS:
            problems.add(f"{where}.rate_limit_period", "name one: second, minute or hour")
    elif node.rate_limit or node.rate_limit_period_seconds:
        given = "rate_limit" if node.rate_limit else "rate_limit_period"
        problems.add(f"{where}.{given}", "needs a rate_limit_bucket_expression")


def _check_edges(
    definition: Definition, nodes: dict[str, NodeSpec], problems: _Problems
) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    if len(definition.edges) > MAX_EDGES:
        problems.add("definition.edges", f"at most {MAX_EDGES} edges")
    incoming: dict[str, list[int]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    seen: dict[tuple[str, str], int] = {}
    for index, edge in enumerate(definition.edges):
        where = f"definition.edges[{index}]"
        known = True
        for end in ("source", "target"):
            name = getattr(edge, end)
            if name not in nodes:
                problems.add(f"{where}.{end}", f"unknown node {name!r}")
                known = False
        if not known:
            continue
        if edge.source == edge.target:
            problems.add(where, f"self-loop on {edge.source!r}")
            continue
        pair = (edge.source, edge.target)
        if pair in seen:
            problems.add(where, f"duplicate edge {edge.source!r} → {edge.target!r}")
            continue
        seen[pair] = index
        incoming[edge.target].append(index)
        children[edge.source].append(edge.target)
    return dict(incoming), dict(children)


def _topological(
    node_ids: list[str], incoming: dict[str, list[int]], definition: Definition
) -> tuple[list[str], list[str]]:
    """Kahn's order, and the nodes of one cycle if there is one."""
    remaining = {n: len(incoming.get(n, [])) for n in node_ids}
    children: dict[str, list[str]] = defaultdict(list)
    for n in node_ids:
        for index in incoming.get(n, []):
            children[definition.edges[index].source].append(n)
    ready = deque(n for n in node_ids if remaining[n] == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for child in children[current]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) == len(node_ids):
        return order, []
    # Walk parents among the leftover nodes until one repeats: that is a cycle.
    leftover = {n for n in node_ids if remaining[n] > 0}
    walk: list[str] = [next(n for n in node_ids if n in leftover)]
    while True:
        parent = next(
            definition.edges[i].source
            for i in incoming[walk[-1]]
            if definition.edges[i].source in leftover
        )
        if parent in walk:
            cycle = walk[walk.index(parent) :]
            return order, list(reversed(cycle))
        walk.append(parent)


def _ancestors(plan: Plan) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node_id in plan.order:
        above: set[str] = set()
        for index in plan.incoming.get(node_id, []):
            source = plan.edge(index).source
            above |= {source} | found[source]
        found[node_id] = above
    return found


def _compile_expressions(
    result: Plan, ancestors: dict[str, set[str]] | None, problems: _Problems
) -> None:
    for index, node in enumerate(result.definition.nodes):
        if result.nodes.get(node.id) is not node:
            continue
        for name, compiled_ones, wanted, kind in (
            ("input_expression", result.inputs, dict, "a map"),
            ("concurrency_key_expression", result.concurrency_keys, str, "a string"),
            ("rate_limit_bucket_expression", result.rate_buckets, str, "a string"),
        ):
            source = getattr(node, name)
            if not source:
                continue
            where = f"definition.nodes[{index}].{name}"
            compiled = _compile(source, where, problems)
            if compiled and _reads_upstream_only(compiled, ancestors, node.id, where, problems):
                if problem := _constant_problem(compiled, wanted, kind):
                    problems.add(where, problem)
                compiled_ones[node.id] = compiled
    for index, edge in enumerate(result.definition.edges):
        if not edge.condition or index not in result.incoming.get(edge.target, []):
            continue
        where = f"definition.edges[{index}].condition"
        compiled = _compile(edge.condition, where, problems)
        if compiled and _reads_upstream_only(compiled, ancestors, edge.target, where, problems):
            if problem := _constant_problem(compiled, bool, "a bool"):
                problems.add(where, problem)
            result.conditions[index] = compiled


def _compile(source: str, where: str, problems: _Problems) -> Expression | None:
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        problems.add(where, str(exc))
        return None


def _reads_upstream_only(
    expression: Expression,
    ancestors: dict[str, set[str]] | None,
    node_id: str,
    where: str,
    problems: _Problems,
) -> bool:
    if ancestors is None:
        return True
    strangers = sorted(expression.nodes - ancestors[node_id])
    for name in strangers:
        problems.add(where, f"reads nodes.{name}, which does not run before {node_id!r}")
    return not strangers


def _constant_problem(expression: Expression, wanted: type, kind: str) -> str | None:
    """An expression that reads nothing can be tried now: a type error or a
    result of the wrong kind is reported at validation, not at run time."""
    if expression.variables:
        return None
    try:
        value = expression.evaluate({})
    except ExpressionError as exc:
        return str(exc)
    return None if isinstance(value, wanted) else f"must yield {kind}"
