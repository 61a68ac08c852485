"""A workflow's graph as SVG, drawn on the server.

Left to right by depth (the longest path from a root), one column per depth,
the nodes of a column ordered by the mean height of their parents so that
edges cross a little less. Every user-supplied string (node ids, types,
conditions) goes through Markup's escaping; colours come from classes in
static/graph.css, since the Content-Security-Policy forbids inline styles.

A definition pasted into the validation page may be invalid: edges naming
unknown nodes and self-loops are left out, duplicate node ids are drawn once,
and a cycle is broken where it is met so that the rest still gets a layout.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping

from markupsafe import Markup

from orchestrator.model import Definition, EdgeSpec, NodeSpec, NodeStatus

SVG_NS = "http://www.w3.org/2000/svg"
NODE_WIDTH = 180
NODE_HEIGHT = 46
COLUMN_GAP = 100
ROW_GAP = 24
PAD = 16
# How many characters fit: the box is a fixed width so columns line up, and
# the full text is in the node's <title>.
ID_CHARS = 22
TYPE_CHARS = 26
CONDITION_CHARS = 16

# Characters XML 1.0 cannot hold at all, not even escaped: one of them would
# make the whole SVG unreadable to an XML parser.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """`text` without the characters XML cannot hold (escaping is still Markup's)."""
    return _NOT_XML.sub("", text)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the last one an ellipsis when cut."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def state_class(state: str) -> str:
    """The CSS class for a state name: `state-running`, or `state-none` when empty."""
    name = re.sub(r"[^a-z0-9-]", "", state.lower())
    return f"state-{name or 'none'}"


def svg_open(css_class: str, width: int, height: int, label: str, role: str = "img") -> Markup:
    """The <svg> start tag, sized in pixels so that a phone scrolls it instead of
    shrinking its text. A drawing with links is a "group": as an "img" its
    links would be hidden from screen readers."""
    return Markup(
        '<svg xmlns="{}" class="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="{}" aria-label="{}">'
    ).format(SVG_NS, css_class, width, height, width, height, role, printable(label))


def workflow_svg(
    definition: Definition,
    states: Mapping[str, NodeStatus] | None = None,
    link: Callable[[str], str | None] | None = None,
    selected: str | None = None,
) -> Markup:
    """The definition's graph, each node coloured by its state in `states`.

    A node absent from `states`, or every node when `states` is None (a
    definition page), has an empty data-state and the class `state-none`.
    `link(node_id)` gives the URL a node links to, or None for no link; the
    `selected` node is marked (the one whose task a run page shows).
    """
    nodes: dict[str, NodeSpec] = {}
    for node in definition.nodes:
        nodes.setdefault(node.id, node)
    edges = [
        edge
        for edge in definition.edges
        if edge.source in nodes and edge.target in nodes and edge.source != edge.target
    ]
    corners = layout(list(nodes), edges)
    width = max((x for x, _ in corners.values()), default=0) + NODE_WIDTH + PAD
    height = max((y for _, y in corners.values()), default=0) + NODE_HEIGHT + PAD
    parts = [svg_open("graph", width, height, "workflow graph", role="group"), _DEFS]
    parts += [_edge(edge, corners) for edge in edges]
    for node in nodes.values():
        state = (states or {}).get(node.id)
        href = link(node.id) if link is not None else None
        parts.append(_node(node, corners[node.id], state, href, node.id == selected))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def layout(node_ids: list[str], edges: list[EdgeSpec]) -> dict[str, tuple[int, int]]:
    """The top-left corner of each node's box."""
    parents: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        parents[edge.target].append(edge.source)
    depth = _depths(node_ids, parents, edges)
    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node_id in node_ids:
        columns[depth[node_id]].append(node_id)
    rows = max((len(column) for column in columns), default=0)
    pitch = NODE_HEIGHT + ROW_GAP
    middle: dict[str, float] = {}
    corners: dict[str, tuple[int, int]] = {}
    for index, column in enumerate(columns):
        if index:
            # Stable: nodes whose parents sit at the same height keep the
            # definition's order. Only parents in earlier columns count (a
            # cycle's back edge points forward to a column not yet placed).
            column.sort(key=lambda n: _mean([middle[p] for p in parents[n] if p in middle]))
        top = PAD + (rows - len(column)) * pitch // 2
        x = PAD + index * (NODE_WIDTH + COLUMN_GAP)
        for row, node_id in enumerate(column):
            y = top + row * pitch
            corners[node_id] = (x, y)
            middle[node_id] = y + NODE_HEIGHT / 2
    return corners


def _depths(
    node_ids: list[str], parents: Mapping[str, list[str]], edges: list[EdgeSpec]
) -> dict[str, int]:
    """Each node's longest path from a root, in Kahn's order. On a cycle, the
    first waiting node is placed as if its unplaced parents were not there."""
    children: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        children[edge.source].append(edge.target)
    waiting = {node_id: len(parents.get(node_id, ())) for node_id in node_ids}
    ready = deque(node_id for node_id in node_ids if waiting[node_id] == 0)
    depth: dict[str, int] = {}
    while len(depth) < len(node_ids):
        if not ready:
            ready.append(next(node_id for node_id in node_ids if node_id not in depth))
        current = ready.popleft()
        if current in depth:
            continue
        above = [depth[p] for p in parents.get(current, ()) if p in depth]
        depth[current] = max(above, default=-1) + 1
        for child in children[current]:
            waiting[child] -= 1
            if waiting[child] == 0 and child not in depth:
                ready.append(child)
    return depth


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


_DEFS = Markup(
    '<defs><marker id="graph-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
    'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
    '<path class="edge-arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>'
)


def _edge(edge: EdgeSpec, corners: Mapping[str, tuple[int, int]]) -> Markup:
    source_x, source_y = corners[edge.source]
    target_x, target_y = corners[edge.target]
    x1, y1 = source_x + NODE_WIDTH, source_y + NODE_HEIGHT // 2
    x2, y2 = target_x, target_y + NODE_HEIGHT // 2
    bend = max(COLUMN_GAP // 2, abs(x2 - x1) // 2)
    path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    parts = [
        Markup('<g class="edge" data-source="{}" data-target="{}">').format(
            printable(edge.source), printable(edge.target)
        ),
        Markup('<path class="edge-line" d="{}" marker-end="url(#graph-arrow)"/>').format(path),
    ]
    if edge.condition:
        label_x, label_y = _label_point(x1, y1, x2, y2, bend)
        parts.append(
            Markup(
                '<g class="edge-condition"><title>{}</title>'
                '<text class="edge-label" x="{}" y="{}" text-anchor="middle">{}</text></g>'
            ).format(
                printable(edge.condition),
                label_x,
                label_y - 5,
                clip(edge.condition, CONDITION_CHARS),
            )
        )
    parts.append(Markup("</g>"))
    return Markup("").join(parts)


def _label_point(x1: int, y1: int, x2: int, y2: int, bend: int) -> tuple[int, int]:
    """Where on the curve a condition goes: the middle of an edge between
    neighbouring columns, or the gap just after the source on a longer edge, so
    that it sits neither on a node in between nor on the labels of the other
    edges that meet at the target."""
    x = x1 + COLUMN_GAP / 2 if x2 > x1 else (x1 + x2) / 2
    # The curve's x grows with t from x1 to x2 (both control points lie between
    # them), so bisection finds the t at that x.
    low, high = 0.0, 1.0
    for _ in range(24):
        t = (low + high) / 2
        if _bezier(t, x1, x1 + bend, x2 - bend, x2) < x:
            low = t
        else:
            high = t
    return round(x), round(_bezier(low, y1, y1, y2, y2))


def _bezier(t: float, p0: float, p1: float, p2: float, p3: float) -> float:
    u = 1 - t
    return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3


def _node(
    node: NodeSpec,
    corner: tuple[int, int],
    state: NodeStatus | None,
    href: str | None,
    selected: bool,
) -> Markup:
    x, y = corner
    status = state.value if state is not None else ""
    title = f"{node.id} ({node.type})" + (f": {status}" if status else "")
    body = Markup(
        '<g class="node {}" data-node-id="{}" data-state="{}"><title>{}</title>'
        '<rect class="node-box" x="{}" y="{}" width="{}" height="{}" rx="6"/>'
        '<text class="node-id" x="{}" y="{}">{}</text>'
        '<text class="node-type" x="{}" y="{}">{}</text></g>'
    ).format(
        state_class(status) + (" selected" if selected else ""),
        printable(node.id),
        status,
        printable(title),
        x,
        y,
        NODE_WIDTH,
        NODE_HEIGHT,
        x + 10,
        y + 19,
        clip(node.id, ID_CHARS),
        x + 10,
        y + 36,
        clip(node.type, TYPE_CHARS),
    )
    if href is None:
        return body
    current = Markup(' aria-current="true"') if selected else ""
    return Markup('<a href="{}"{}>{}</a>').format(href, current, body)
