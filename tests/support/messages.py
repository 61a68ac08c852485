"""Hypothesis strategies for protobuf messages, made from their descriptors,
so a field or message added later is fuzzed without a change here.

Every field type gets the values a careless or hostile client sends: odd
unicode and NUL in strings, integers at the edges of their type, enum
numbers the schema does not name, NaN and Infinity, Structs nested past
protobuf's limit, Timestamps out of range, FieldMasks naming anything.
`words` mixes in strings that reach further than random text (real ids,
names the server knows).

    request = data.draw(messages(method.input_type, words=("echo", task_id)))
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from orchestrator import proto

Draw = Callable[[st.SearchStrategy[Any]], Any]

# Below this many levels of plain (not well-known) messages, fields are set.
MAX_DEPTH = 4
MAX_ITEMS = 3
EDGE_TEXTS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "a=b",
    "=",
    "x" * 201,
    "x" * 10_001,
    "é" * 130,
    "🙂" * 9,
    "\u202e\u200b\ufeff",
    "' OR 1=1 --",
    "../../etc/passwd",
    "%s%n{0}",
    "NaN",
    "-1",
    "9" * 40,
)
_FIELD = FieldDescriptor
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER_RANGES = {
    _FIELD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FIELD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FIELD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FIELD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FIELD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FIELD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FIELD.TYPE_UINT32: (0, 2**32 - 1),
    _FIELD.TYPE_FIXED32: (0, 2**32 - 1),
    _FIELD.TYPE_UINT64: (0, 2**64 - 1),
    _FIELD.TYPE_FIXED64: (0, 2**64 - 1),
}
# Timestamp's valid range is [-62135596800, 253402300799] seconds.
_SECONDS = (0, -1, -62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800)
_NANOS = (0, 999_999_999, 1_000_000_000, -1)

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.text(max_size=20),
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=MAX_ITEMS),
        st.dictionaries(st.text(max_size=10), inner, max_size=MAX_ITEMS),
    ),
    max_leaves=8,
)


def nested(levels: int) -> dict[str, Any]:
    """{"a": {"a": ... {}}}, `levels` objects deep."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


_FINITE_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=MAX_ITEMS),
        st.dictionaries(st.text(max_size=10), inner, max_size=MAX_ITEMS),
    ),
    max_leaves=6,
)
_FINITE_OBJECTS = st.dictionaries(st.text(max_size=10), _FINITE_JSON, max_size=4)
JSON_OBJECTS = st.one_of(
    st.dictionaries(st.text(max_size=10), _JSON, max_size=4),
    st.integers(1, 45).map(nested),
)


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({0, 1, low, high, max(low, -1), min(high, 2**31), max(low, -(2**31))})
    return st.one_of(
        st.sampled_from(edges), st.integers(max(low, -5), min(high, 500)), st.integers(low, high)
    )


def service_methods() -> list[MethodDescriptor]:
    """Every method of every service in the generated modules, by full name."""
    found: list[MethodDescriptor] = []
    for module_info in pkgutil.iter_modules(proto.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"{proto.__name__}.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found += service.methods
    return sorted(found, key=lambda m: m.full_name)


def messages(
    descriptor: Descriptor, words: Sequence[str] = (), ids: Sequence[str] = ()
) -> st.SearchStrategy[Message]:
    """Instances of `descriptor`'s message, about half their fields set:
    half of them plausible (`ids` in fields named like ids or tokens, `words`
    in other text, small numbers, named enum values, finite JSON, valid
    Timestamps), so requests get past the first check to the rules behind
    it, and half hostile (anything above, and any of them anywhere)."""
    words = (*words, *ids)
    plausible = _Values(
        texts=st.sampled_from(tuple(words) or ("a",)),
        ids=st.sampled_from(tuple(ids) or tuple(words) or ("a",)),
        paths=st.sampled_from(_mask_paths(descriptor)),
        hostile=False,
    )
    hostile_texts = st.one_of(
        st.sampled_from(tuple(words) or EDGE_TEXTS),
        st.text(max_size=30),
        st.sampled_from(EDGE_TEXTS),
    )
    hostile = _Values(
        texts=hostile_texts,
        ids=hostile_texts,
        # FieldMask paths: the names a mask could mean, and some it could not.
        paths=st.one_of(st.sampled_from(_mask_paths(descriptor)), hostile_texts),
        hostile=True,
    )

    @st.composite
    def build(draw: Draw) -> Message:
        message = message_factory.GetMessageClass(descriptor)()
        values = hostile if draw(st.booleans()) else plausible
        _Filler(draw, values).fill(message, 0)
        return message

    return build()


@dataclass(frozen=True)
class _Values:
    texts: st.SearchStrategy[str]
    ids: st.SearchStrategy[str]
    paths: st.SearchStrategy[str]
    hostile: bool


class _Filler:
    def __init__(self, draw: Draw, values: _Values) -> None:
        self.draw = draw
        self.values = values

    def fill(self, message: Any, depth: int) -> None:
        draw = self.draw
        for field in message.DESCRIPTOR.fields:
            if not draw(st.booleans()):
                continue
            target = getattr(message, field.name)
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
                for _ in range(draw(st.integers(0, MAX_ITEMS))):
                    key = draw(self.scalars(key_field))
                    if value_field.message_type is not None:
                        self.fill_message(target[key], depth)
                    else:
                        target[key] = draw(self.scalars(value_field))
            elif field.is_repeated:
                for _ in range(draw(st.integers(0, MAX_ITEMS))):
                    if entry is not None:
                        self.fill_message(target.add(), depth)
                    else:
                        target.append(draw(self.scalars(field)))
            elif entry is not None:
                self.fill_message(target, depth)
            else:
                setattr(message, field.name, draw(self.scalars(field)))

    def fill_message(self, message: Any, depth: int) -> None:
        """In place: protobuf refuses to copy a Struct nested past its limit."""
        draw = self.draw
        message.SetInParent()
        name = message.DESCRIPTOR.full_name
        hostile = self.values.hostile
        if name == "google.protobuf.Struct":
            message.update(draw(JSON_OBJECTS if hostile else _FINITE_OBJECTS))
        elif name == "google.protobuf.ListValue":
            message.extend(draw(st.lists(_JSON if hostile else _FINITE_JSON, max_size=MAX_ITEMS)))
        elif name == "google.protobuf.Value":
            set_value(message, draw(_JSON if hostile else _FINITE_JSON))
        elif name == "google.protobuf.Timestamp":
            if hostile:
                message.seconds = draw(st.one_of(st.sampled_from(_SECONDS), integers(*_INT64)))
                message.nanos = draw(st.one_of(st.sampled_from(_NANOS), integers(*_INT32)))
            else:
                message.seconds = draw(st.integers(0, 4_102_444_800))  # to 2100
        elif name == "google.protobuf.FieldMask":
            message.paths.extend(draw(st.lists(self.values.paths, max_size=MAX_ITEMS)))
        elif depth < MAX_DEPTH:
            self.fill(message, depth + 1)

    def scalars(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        kind, hostile = field.type, self.values.hostile
        if field.enum_type is not None:
            named = st.sampled_from(sorted(field.enum_type.values_by_number))
            return st.one_of(named, integers(*_INT32)) if hostile else named
        if kind == _FIELD.TYPE_STRING:
            if field.name.endswith(("id", "token")):
                return self.values.ids
            return self.values.texts
        if kind == _FIELD.TYPE_BYTES:
            return st.binary(max_size=30)
        if kind == _FIELD.TYPE_BOOL:
            return st.booleans()
        if kind in (_FIELD.TYPE_DOUBLE, _FIELD.TYPE_FLOAT):
            width = 64 if kind == _FIELD.TYPE_DOUBLE else 32
            return st.floats(allow_nan=hostile, allow_infinity=hostile, width=width)
        return integers(*_INTEGER_RANGES[kind]) if hostile else st.integers(0, 10)


def set_value(value: Any, item: Any) -> None:
    """A `google.protobuf.Value` set to the JSON value `item`."""
    # bool before int: bool is an int subclass.
    if item is None:
        value.null_value = 0
    elif isinstance(item, bool):
        value.bool_value = item
    elif isinstance(item, int | float):
        value.number_value = item
    elif isinstance(item, str):
        value.string_value = item
    elif isinstance(item, list):
        value.list_value.SetInParent()
        value.list_value.extend(item)
    else:
        value.struct_value.SetInParent()
        value.struct_value.update(item)


def _mask_paths(descriptor: Descriptor) -> list[str]:
    """Field names of `descriptor` and of the messages it holds, alone and dotted."""
    names = {"*", "labels.x", "input.a"}
    for field in descriptor.fields:
        names.add(field.name)
        if field.message_type is not None:
            for inner in field.message_type.fields:
                names.update((inner.name, f"{field.name}.{inner.name}"))
    return sorted(names)
