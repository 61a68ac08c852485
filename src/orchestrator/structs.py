"""Between `google.protobuf.Struct` and plain JSON-shaped Python values, for
the SDKs (workers and clients) and the server.

`json_format.MessageToDict` turns every number into a float (`3` arrives as
`3.0`, so `range(input["n"])` breaks), and `Struct.update` refuses a bad
value with "Unexpected type" and no hint where; these walks do both jobs
the way a handler's author expects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

# Integers beyond this do not survive a trip through a double.
_EXACT_INT = 2**53


def to_dict(message: struct_pb2.Struct, *, whole_as_int: bool = True) -> dict[str, Any]:
    """The Struct as plain values. Whole numbers come back as ints unless
    `whole_as_int` is false (the server keeps JSON's doubles, as CEL sees
    them)."""
    return {key: _from_value(value, whole_as_int) for key, value in message.fields.items()}


def _from_value(value: struct_pb2.Value, whole_as_int: bool) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return to_dict(value.struct_value, whole_as_int=whole_as_int)
    if kind == "list_value":
        return [_from_value(item, whole_as_int) for item in value.list_value.values]
    if kind == "number_value":
        number = value.number_value
        if whole_as_int and number.is_integer() and abs(number) <= _EXACT_INT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def to_struct(data: Mapping[str, Any], where: str = "output") -> struct_pb2.Struct:
    """`data` as a Struct; ValueError naming the first value JSON cannot hold."""
    message = struct_pb2.Struct()
    _fill_struct(message, data, where)
    return message


def _fill_struct(target: struct_pb2.Struct, data: Mapping[Any, Any], where: str) -> None:
    for key, item in data.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: key {key!r} is not a string")
        _fill(target.fields[key], item, f"{where}.{key}")


def _fill(target: struct_pb2.Value, item: Any, where: str) -> None:
    # bool before int: bool is an int subclass.
    if item is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        target.bool_value = item
    elif isinstance(item, int | float):
        if not math.isfinite(item):
            raise ValueError(f"{where}: {item} is not a JSON number")
        target.number_value = item
    elif isinstance(item, str):
        target.string_value = item
    elif isinstance(item, Mapping):
        # Marks the field present even when the mapping is empty.
        target.struct_value.SetInParent()
        _fill_struct(target.struct_value, item, where)
    elif isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
        target.list_value.SetInParent()
        for index, element in enumerate(item):
            _fill(target.list_value.values.add(), element, f"{where}[{index}]")
    else:
        raise ValueError(
            f"{where}: a {type(item).__name__} is not JSON "
            "(use dict, list, str, int, float, bool or None)"
        )
