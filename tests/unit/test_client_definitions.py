"""Workflow files as data: parse_workflow takes CreateWorkflowRequest's shape
and reports every problem at once, one field violation each."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.client import (
    Definition,
    EdgeSpec,
    NodeSpec,
    WorkflowSpec,
    definition_from_dict,
    parse_workflow,
)
from orchestrator.errors import InvalidArgument


def problems(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        parse_workflow(data)
    return [(v.field, v.description) for v in caught.value.violations]


def test_a_whole_workflow() -> None:
    spec = parse_workflow(
        {
            "name": "etl",
            "description": "extract, then load",
            "definition": {
                "nodes": [
                    {"id": "extract", "type": "echo", "input": {"rows": 3}, "max_attempts": 2},
                    {"id": "load", "type": "echo", "inputExpression": "{'n': 1.0}"},
                ],
                "edges": [{"source": "extract", "target": "load", "condition": "true"}],
            },
        }
    )

    assert spec == WorkflowSpec(
        name="etl",
        description="extract, then load",
        definition=Definition(
            nodes=(
                NodeSpec("extract", "echo", {"rows": 3}, max_attempts=2),
                NodeSpec("load", "echo", input_expression="{'n': 1.0}"),
            ),
            edges=(EdgeSpec("extract", "load", "true"),),
        ),
    )


def test_edges_and_description_may_be_left_out() -> None:
    spec = parse_workflow(
        {"name": "one", "description": None, "definition": {"nodes": [{"id": "a", "type": "echo"}]}}
    )

    assert spec.description == ""
    assert spec.definition.edges == ()


def test_every_problem_is_named_by_its_field() -> None:
    found = problems(
        {
            "nmae": "typo",
            "definition": {
                "nodes": [{"id": 1, "type": "echo"}, "not a node", {"id": "b", "tpye": "echo"}],
                "edges": [{"source": "a", "target": "b", "max_attempts": True}],
            },
        }
    )

    assert [field for field, _ in found] == [
        "nmae",
        "name",
        "definition.nodes[0].id",
        "definition.nodes[1]",
        "definition.nodes[2].tpye",
        "definition.edges[0].max_attempts",
    ]
    assert found[1][1] == "is required"
    assert found[2][1] == "must be a string, not int 1"
    assert found[3][1] == "must be an object, not str 'not a node'"
    assert found[4][1].startswith("unknown field (expected one of: id, type, input,")


def test_the_top_must_be_an_object_with_a_definition() -> None:
    assert problems(["name", "x"]) == [("(top)", "must be an object, not a list")]
    assert problems({"name": "x"}) == [("definition", "is required")]
    assert problems({"name": "x", "definition": {"nodes": {"a": 1}}}) == [
        ("definition.nodes", "must be a list, not an object")
    ]


def test_a_bare_definition() -> None:
    definition = definition_from_dict({"nodes": [{"id": "a", "type": "echo"}], "edges": []})
    assert definition == Definition((NodeSpec("a", "echo"),), ())
    with pytest.raises(InvalidArgument) as caught:
        definition_from_dict({"nodes": [{"id": "a", "type": 3}]})
    assert [v.field for v in caught.value.violations] == ["definition.nodes[0].type"]
