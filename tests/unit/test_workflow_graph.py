"""orchestrator.engine.graph.plan: a workflow definition checked before it
is stored (DESIGN §5). Each problem is one field violation naming the field
and saying what is wrong; all of them are reported at once; a valid
definition yields an order that respects every edge."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from orchestrator.engine.expressions import ExpressionError, compile_expression, context
from orchestrator.engine.graph import MAX_EDGES, MAX_NODES, Plan, plan
from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import Definition, EdgeSpec, NodeSpec

MAX_PAYLOAD = 4096


def n(id: str, type: str = "echo", **fields: Any) -> NodeSpec:
    return NodeSpec(id=id, type=type, **fields)


def e(source: str, target: str, condition: str = "") -> EdgeSpec:
    return EdgeSpec(source, target, condition)


def build(nodes: list[NodeSpec], edges: list[EdgeSpec] | None = None) -> Plan:
    return plan(Definition(tuple(nodes), tuple(edges or ())), MAX_PAYLOAD)


def problems(nodes: list[NodeSpec], edges: list[EdgeSpec] | None = None) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as caught:
        build(nodes, edges)
    assert caught.value.violations, "InvalidArgument without field violations"
    return list(caught.value.violations)


def respects(order: list[str], edges: list[EdgeSpec]) -> bool:
    position = {node_id: index for index, node_id in enumerate(order)}
    return all(position[x.source] < position[x.target] for x in edges)


AB = [n("a"), n("b")]
ABC = [n("a"), n("b"), n("c")]

# One row per problem: (nodes, edges, the field, a fragment of its description).
INVALID = {
    "no nodes": ([], [], "definition.nodes", "at least one node"),
    "too many nodes": (
        [n(f"n{i}") for i in range(MAX_NODES + 1)],
        [],
        "definition.nodes",
        f"at most {MAX_NODES} nodes",
    ),
    "too many edges": (
        [n(f"n{i}") for i in range(MAX_NODES)],
        [e(f"n{i}", f"n{j}") for i in range(6) for j in range(i + 1, MAX_NODES)][: MAX_EDGES + 1],
        "definition.edges",
        f"at most {MAX_EDGES} edges",
    ),
    "duplicate node id": (
        [n("a"), n("b"), n("a")],
        [],
        "definition.nodes[2].id",
        "duplicate node id 'a' (also nodes[0])",
    ),
    "empty node id": ([n("")], [], "definition.nodes[0].id", "1-128 letters"),
    "node id starting with a digit": ([n("1a")], [], "definition.nodes[0].id", "not starting"),
    "node id with a space": ([n("a"), n("b c")], [], "definition.nodes[1].id", "letters, digits"),
    "node id too long": ([n("x" * 129)], [], "definition.nodes[0].id", "1-128"),
    "empty type": ([n("a", "")], [], "definition.nodes[0].type", "must not be empty"),
    "bad type": ([n("a", "9lives")], [], "definition.nodes[0].type", "must start with a letter"),
    "input over the payload limit": (
        [n("a", input={"blob": "x" * MAX_PAYLOAD})],
        [],
        "definition.nodes[0].input",
        f"over the limit of {MAX_PAYLOAD}",
    ),
    "max_attempts out of range": (
        [n("a", max_attempts=101)],
        [],
        "definition.nodes[0].max_attempts",
        "must be in [0, 100]",
    ),
    "negative timeout": (
        [n("a", timeout_seconds=-1)],
        [],
        "definition.nodes[0].timeout_seconds",
        "must be in [0, ",
    ),
    "edge from an unknown node": (
        AB,
        [e("a", "b"), e("x", "b")],
        "definition.edges[1].source",
        "unknown node 'x'",
    ),
    "edge to an unknown node": (AB, [e("a", "zz")], "definition.edges[0].target", "'zz'"),
    "self-loop": (AB, [e("a", "b"), e("b", "b")], "definition.edges[1]", "self-loop on 'b'"),
    "duplicate edge": (
        AB,
        [e("a", "b"), e("a", "b", "true")],
        "definition.edges[1]",
        "duplicate edge 'a' → 'b'",
    ),
    "two-node cycle": (AB, [e("a", "b"), e("b", "a")], "definition.edges", "cycle: "),
    "expression that does not parse": (
        [n("a", input_expression="{'x': ")],
        [],
        "definition.nodes[0].input_expression",
        "1:7",
    ),
    "condition that does not parse": (
        AB,
        [e("a", "b", "nodes.a.output.ok ==")],
        "definition.edges[0].condition",
        "Syntax error",
    ),
    "expression reading an unknown variable": (
        [n("a", input_expression="{'x': env.HOME}")],
        [],
        "definition.nodes[0].input_expression",
        "unknown variable 'env'",
    ),
    "expression reading a node that runs after it": (
        [n("a", input_expression="{'x': nodes.b.output.x}"), n("b")],
        [e("a", "b")],
        "definition.nodes[0].input_expression",
        "reads nodes.b, which does not run before 'a'",
    ),
    "expression reading an unrelated node": (
        [*ABC[:2], n("c", input_expression="{'x': nodes['b'].output.x}")],
        [e("a", "c")],
        "definition.nodes[2].input_expression",
        "reads nodes.b, which does not run before 'c'",
    ),
    "expression reading its own node": (
        [n("a", input_expression="{'x': nodes.a.output.x}")],
        [],
        "definition.nodes[0].input_expression",
        "reads nodes.a",
    ),
    "condition reading its target": (
        AB,
        [e("a", "b", "nodes.b.output.ok")],
        "definition.edges[0].condition",
        "reads nodes.b, which does not run before 'b'",
    ),
    "constant expression that is not a map": (
        [n("a", input_expression="[1, 2]")],
        [],
        "definition.nodes[0].input_expression",
        "must yield a map",
    ),
    "constant expression with a type error": (
        [n("a", input_expression="{'x': 1 + 2.0}")],
        [],
        "definition.nodes[0].input_expression",
        "No such overload",
    ),
    "constant condition that is not a bool": (
        AB,
        [e("a", "b", "'yes'")],
        "definition.edges[0].condition",
        "must yield a bool",
    ),
    "expression too long": (
        [n("a", input_expression="{'x': '" + "y" * 4096 + "'}")],
        [],
        "definition.nodes[0].input_expression",
        "longer than 4096 characters",
    ),
    "condition too long": (
        AB,
        [e("a", "b", "true" + " && true" * 600)],
        "definition.edges[0].condition",
        "longer than 4096 characters",
    ),
}


@pytest.mark.parametrize(("nodes", "edges", "field", "fragment"), INVALID.values(), ids=INVALID)
def test_each_problem_is_one_field_violation(
    nodes: list[NodeSpec], edges: list[EdgeSpec], field: str, fragment: str
) -> None:
    found = problems(nodes, edges)

    assert [v.field for v in found] == [field], found
    assert fragment in found[0].description, found[0].description


def test_every_problem_is_reported_at_once_in_definition_order() -> None:
    nodes = [
        n("a"),
        n("a"),  # duplicate
        n("b", ""),  # no type
        n("c", input_expression="{'x': "),  # does not parse
        n("d", input_expression="{'x': nodes.e.output.x}"),  # e does not run before d
        n("e"),
    ]
    edges = [e("a", "ghost"), e("b", "b"), e("a", "b"), e("a", "b"), e("b", "e", "1")]

    found = problems(nodes, edges)

    assert [v.field for v in found] == [
        "definition.nodes[1].id",
        "definition.nodes[2].type",
        "definition.edges[0].target",
        "definition.edges[1]",
        "definition.edges[3]",
        "definition.nodes[3].input_expression",
        "definition.nodes[4].input_expression",
        "definition.edges[4].condition",
    ]
    message = str(InvalidArgument(violations=found))
    assert "definition.nodes[1].id: duplicate node id 'a'" in message


def test_a_cycle_names_its_nodes_in_edge_order() -> None:
    nodes = [n("start"), n("x"), n("y"), n("z"), n("end")]
    edges = [e("start", "x"), e("x", "y"), e("y", "z"), e("z", "x"), e("z", "end")]

    found = problems(nodes, edges)

    assert [v.field for v in found] == ["definition.edges"]
    description = found[0].description
    assert description.startswith("cycle: ")
    cycle = description.removeprefix("cycle: ").split(" → ")
    # A closed walk (first = last) over exactly the nodes of the cycle, along edges.
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["x", "y", "z"]
    pairs = {(x.source, x.target) for x in edges}
    assert all((a, b) in pairs for a, b in itertools.pairwise(cycle))


def test_a_cycle_does_not_hide_other_problems() -> None:
    found = problems(
        [n("a"), n("b", input_expression="{'x': "), n("c", "")],
        [e("a", "b"), e("b", "a")],
    )

    assert sorted(v.field for v in found) == [
        "definition.edges",
        "definition.nodes[1].input_expression",
        "definition.nodes[2].type",
    ]


def test_a_node_with_a_bad_id_or_an_edge_to_nowhere_reports_nothing_twice() -> None:
    # The duplicate's expression and the dangling edge's condition are not
    # compiled: one problem each, not a cascade.
    found = problems(
        [n("a"), n("a", input_expression="{'x': nodes.zz.output}")],
        [e("a", "nowhere", "nodes.zz.output.ok")],
    )

    assert [v.field for v in found] == ["definition.nodes[1].id", "definition.edges[0].target"]


def test_the_order_respects_every_edge() -> None:
    nodes = [n("d"), n("c"), n("b"), n("a"), n("lonely")]
    edges = [e("a", "b"), e("a", "c"), e("b", "d"), e("c", "d")]

    result = build(nodes, edges)

    assert sorted(result.order) == ["a", "b", "c", "d", "lonely"]
    assert respects(result.order, edges)
    assert set(result.roots) == {"a", "lonely"}
    assert sorted(result.children["a"]) == ["b", "c"]
    assert [result.edge(i).source for i in result.incoming["d"]] == ["b", "c"]


def test_a_long_chain_and_a_wide_fan_are_ordered() -> None:
    chain = [n(f"c{i}") for i in range(MAX_NODES)]
    chain_edges = [e(f"c{i}", f"c{i + 1}") for i in range(MAX_NODES - 1)]
    assert build(chain, chain_edges).order == [f"c{i}" for i in range(MAX_NODES)]

    fan = [n("start"), *(n(f"p{i}") for i in range(50)), n("join")]
    fan_edges = [e("start", f"p{i}") for i in range(50)] + [e(f"p{i}", "join") for i in range(50)]
    result = build(fan, fan_edges)
    assert result.order[0] == "start" and result.order[-1] == "join"
    assert respects(result.order, fan_edges)


def test_expressions_may_read_any_ancestor_and_the_run_input() -> None:
    nodes = [
        n("a"),
        n("b"),
        n("c", input_expression="{'sum': nodes.a.output.n + nodes['b'].output.n + input.n}"),
    ]
    edges = [e("a", "b"), e("b", "c", "nodes.a.output.n > 0.0 && input.go")]

    result = build(nodes, edges)

    assert result.order == ["a", "b", "c"]
    assert set(result.inputs) == {"c"}
    assert set(result.conditions) == {1}
    scope = context({"n": 1.0, "go": True}, {"a": {"n": 2.0}, "b": {"n": 4.0}})
    assert result.inputs["c"].evaluate(scope) == {"sum": 7.0}
    assert result.conditions[1].evaluate(scope) is True


def test_constant_expressions_of_the_right_kind_are_accepted() -> None:
    result = build([n("a", input_expression="{'x': 1 + 2}"), n("b")], [e("a", "b", "1 < 2")])

    assert result.inputs["a"].evaluate({}) == {"x": 3}
    assert result.conditions[0].evaluate({}) is True


def test_hyphenated_node_ids_are_read_with_brackets() -> None:
    nodes = [n("fetch-data"), n("use", input_expression="{'v': nodes['fetch-data'].output.v}")]

    result = build(nodes, [e("fetch-data", "use")])

    assert result.inputs["use"].nodes == {"fetch-data"}


# -- run-time errors: ExpressionError with the expression's message -----------------

RUN_TIME = {
    "missing key": (
        "{'x': nodes.a.output.missing}",
        {"a": {"n": 1.0}},
        "no such key: missing",
    ),
    "double plus int": ("{'x': nodes.a.output.n + 1}", {"a": {"n": 1.0}}, "float + int"),
    "not a map": ("nodes.a.output.n", {"a": {"n": 1.0}}, ""),
}


@pytest.mark.parametrize(("source", "outputs", "fragment"), RUN_TIME.values(), ids=RUN_TIME)
def test_run_time_errors_name_the_expression(
    source: str, outputs: dict[str, Any], fragment: str
) -> None:
    expression = compile_expression(source)
    try:
        value = expression.evaluate(context({}, outputs))
    except ExpressionError as exc:
        assert str(exc).startswith(repr(source) + ": ")
        assert fragment in str(exc)
    else:
        # Not an error by itself: the run driver rejects a result that is not a map.
        assert not isinstance(value, dict) and not fragment


# -- errors that once escaped as other exceptions -----------------------------------

ARITHMETIC = {
    "division by zero": ("{'x': int(input.n) / 0}", "division by zero"),
    "index out of range": ("{'x': [1][int(input.n)]}", "index out of bounds"),
    "overflow": ("{'x': 9223372036854775807 + int(input.n)}", "overflow"),
}


@pytest.mark.parametrize(("source", "fragment"), ARITHMETIC.values(), ids=ARITHMETIC)
def test_arithmetic_and_index_errors_at_run_time_are_expression_errors(
    source: str, fragment: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source).evaluate(context({"n": 5.0}, {}))

    assert str(caught.value).startswith(repr(source) + ": ")
    assert fragment in str(caught.value)


def test_a_constant_condition_that_divides_by_zero_is_a_violation() -> None:
    found = problems(AB, [e("a", "b", "1 / 0 == 1")])

    assert [v.field for v in found] == ["definition.edges[0].condition"]
    assert "division by zero" in found[0].description


@pytest.mark.parametrize(
    "source",
    [
        "{'x': input.nodes.later}",
        "{'text': 'see nodes.later for details'}",
        '{"text": "nodes[\'later\'] is not read here"}',
    ],
)
def test_only_real_node_references_are_checked(source: str) -> None:
    result = build([n("a", input_expression=source), n("later")], [e("a", "later")])

    assert result.inputs["a"].nodes == frozenset()


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_node_input_that_is_not_json_is_a_violation(number: float) -> None:
    found = problems([n("a", input={"x": [1, {"y": number}]})])

    assert [v.field for v in found] == ["definition.nodes[0].input"]
    assert "NaN or Infinity" in found[0].description
