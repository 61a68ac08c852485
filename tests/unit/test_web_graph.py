"""orchestrator.web.graph.workflow_svg: a workflow's graph drawn as SVG on the
server. The output is parsed as XML: it must be well-formed, every node and
edge must be there once, nothing a user typed may come out as markup, and the
layout runs left to right without overlaps."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.model import Definition, EdgeSpec, NodeSpec, NodeStatus
from orchestrator.web.graph import CONDITION_CHARS, workflow_svg

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>"


def parse(
    definition: Definition,
    states: Mapping[str, NodeStatus] | None = None,
    link: Callable[[str], str | None] | None = None,
) -> ET.Element:
    return ET.fromstring(str(workflow_svg(definition, states, link)))


def nodes(root: ET.Element) -> dict[str, ET.Element]:
    found: dict[str, ET.Element] = {}
    for g in root.iter(f"{SVG}g"):
        if "node" in g.get("class", "").split():
            node_id = g.get("data-node-id")
            assert node_id is not None and node_id not in found, f"node {node_id!r} drawn twice"
            found[node_id] = g
    return found


def edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]


def box(node: ET.Element) -> tuple[float, float, float, float]:
    rect = node.find(f"{SVG}rect")
    assert rect is not None
    x, y, width, height = (float(rect.get(a, "nan")) for a in ("x", "y", "width", "height"))
    return x, y, width, height


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


DIAMOND = Definition(
    nodes=(
        NodeSpec("a", "fetch"),
        NodeSpec("b", "left"),
        NodeSpec("c", "right"),
        NodeSpec("d", "join"),
    ),
    edges=(
        EdgeSpec("a", "b", "output.ok"),
        EdgeSpec("a", "c", "!output.ok"),
        EdgeSpec("b", "d"),
        EdgeSpec("c", "d"),
    ),
)


def test_user_text_never_comes_out_as_markup() -> None:
    definition = Definition(
        nodes=(NodeSpec(EVIL, EVIL), NodeSpec("b", "t")),
        edges=(EdgeSpec(EVIL, "b", EVIL),),
    )
    markup = str(workflow_svg(definition, {EVIL: NodeStatus.RUNNING}, lambda n: f"/x?n={n}"))
    assert "<script" not in markup
    root = ET.fromstring(markup)
    drawn = nodes(root)
    assert set(drawn) == {EVIL, "b"}
    assert drawn[EVIL].get("data-state") == "RUNNING"
    assert any(EVIL in t for t in texts(drawn[EVIL]))
    [edge] = edges(root)
    assert edge.get("data-source") == EVIL
    titles = [t.text for t in edge.iter(f"{SVG}title")]
    assert titles == [EVIL]


def test_every_node_once_with_its_state() -> None:
    states = {
        "a": NodeStatus.SUCCEEDED,
        "b": NodeStatus.RUNNING,
        "c": NodeStatus.SKIPPED,
        "d": NodeStatus.PENDING,
    }
    drawn = nodes(parse(DIAMOND, states=states))
    assert set(drawn) == {"a", "b", "c", "d"}
    for node_id, state in states.items():
        assert drawn[node_id].get("data-state") == state.value
        assert f"state-{state.value.lower()}" in drawn[node_id].get("class", "").split()
        assert texts(drawn[node_id]) == [node_id, DIAMOND.nodes["abcd".index(node_id)].type]


def test_without_states_nodes_have_no_state() -> None:
    for node in nodes(parse(DIAMOND)).values():
        assert node.get("data-state") == ""
        assert node.get("class") == "node state-none"


def test_nodes_link_where_the_caller_says() -> None:
    root = parse(DIAMOND, link=lambda n: f"/runs/r?node={n}" if n != "d" else None)
    linked = {}
    for anchor in root.iter(f"{SVG}a"):
        [node] = [g for g in anchor if g.get("class", "").startswith("node ")]
        linked[node.get("data-node-id")] = anchor.get("href")
    assert linked == {"a": "/runs/r?node=a", "b": "/runs/r?node=b", "c": "/runs/r?node=c"}
    assert set(nodes(root)) == {"a", "b", "c", "d"}


def test_every_edge_drawn_with_its_condition() -> None:
    root = parse(DIAMOND)
    drawn = {(e.get("data-source"), e.get("data-target")): e for e in edges(root)}
    assert set(drawn) == {(e.source, e.target) for e in DIAMOND.edges}
    assert texts(drawn["a", "b"]) == ["output.ok"]
    assert texts(drawn["a", "c"]) == ["!output.ok"]
    assert texts(drawn["b", "d"]) == []
    for edge in drawn.values():
        path = edge.find(f"{SVG}path")
        assert path is not None and path.get("marker-end") == "url(#graph-arrow)"
    assert root.find(f"{SVG}defs/{SVG}marker[@id='graph-arrow']") is not None


def test_long_condition_is_cut_and_whole_in_its_title() -> None:
    condition = "input.amount > 1000 && input.currency == 'EUR'"
    root = parse(
        Definition((NodeSpec("a", "t"), NodeSpec("b", "t")), (EdgeSpec("a", "b", condition),))
    )
    [edge] = edges(root)
    [label] = texts(edge)
    assert len(label) == CONDITION_CHARS and label.endswith("…")
    assert condition.startswith(label[:-1])
    assert [t.text for t in edge.iter(f"{SVG}title")] == [condition]


def test_children_sit_next_to_their_parents() -> None:
    # x's parent is the second root, y's the first: y goes above x although
    # the definition lists x first.
    definition = Definition(
        nodes=(NodeSpec("r1", "t"), NodeSpec("r2", "t"), NodeSpec("x", "t"), NodeSpec("y", "t")),
        edges=(EdgeSpec("r2", "x"), EdgeSpec("r1", "y")),
    )
    drawn = {node_id: box(node) for node_id, node in nodes(parse(definition)).items()}
    assert drawn["r1"][1] < drawn["r2"][1]
    assert drawn["y"][1] < drawn["x"][1]


def test_svg_is_sized_in_pixels_to_hold_every_node() -> None:
    root = parse(DIAMOND)
    assert root.get("class") == "graph" and root.get("role") == "group"
    assert root.get("aria-label") == "workflow graph"
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}"
    for x, y, w, h in map(box, nodes(root).values()):
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
    assert all("style" not in element.attrib for element in root.iter())


def test_unchecked_definitions_still_draw() -> None:
    # The validation page may draw a definition with a cycle, an unknown
    # node, a self-loop, a duplicate id and characters XML cannot hold.
    definition = Definition(
        nodes=(NodeSpec("a", "t"), NodeSpec("b", "t"), NodeSpec("c", "t"), NodeSpec("a", "u")),
        edges=(
            EdgeSpec("a", "b"),
            EdgeSpec("b", "c", "x\x00\x1b"),
            EdgeSpec("c", "b"),
            EdgeSpec("a", "a"),
            EdgeSpec("a", "ghost"),
        ),
    )
    root = parse(definition)
    assert set(nodes(root)) == {"a", "b", "c"}
    assert {(e.get("data-source"), e.get("data-target")) for e in edges(root)} == {
        ("a", "b"),
        ("b", "c"),
        ("c", "b"),
    }
    assert "x" in itertools.chain.from_iterable(texts(e) for e in edges(root))


@st.composite
def dags(draw: st.DrawFn) -> Definition:
    size = draw(st.integers(min_value=1, max_value=14))
    ids = [f"n{i}" for i in range(size)]
    pairs = list(itertools.combinations(range(size), 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=30)) if pairs else []
    # Shuffled, so that the definition's order is not a topological one.
    node_order = draw(st.permutations(ids))
    edge_order = draw(st.permutations([EdgeSpec(ids[s], ids[t]) for s, t in chosen]))
    return Definition(tuple(NodeSpec(n, "t") for n in node_order), tuple(edge_order))


@given(dags())
def test_layout_runs_left_to_right_without_overlaps(definition: Definition) -> None:
    drawn = {node_id: box(node) for node_id, node in nodes(parse(definition)).items()}
    assert set(drawn) == {n.id for n in definition.nodes}
    for edge in definition.edges:
        assert drawn[edge.target][0] > drawn[edge.source][0] + drawn[edge.source][2]
    for (x1, y1, w1, h1), (x2, y2, w2, h2) in itertools.combinations(drawn.values(), 2):
        assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_the_selected_node_is_marked_for_eyes_and_screen_readers() -> None:
    definition = Definition(nodes=(NodeSpec("a", "echo"), NodeSpec("b", "echo")), edges=())
    markup = str(workflow_svg(definition, None, lambda node_id: f"/x?node={node_id}", "b"))
    assert '<g class="node state-none selected" data-node-id="b"' in markup
    assert '<g class="node state-none" data-node-id="a"' in markup
    assert markup.count('aria-current="true"') == 1
    assert '<a href="/x?node=b" aria-current="true">' in markup
