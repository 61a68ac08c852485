"""Every request decodes or is refused, before any handler sees it.

grpc.aio parses a request with the method's deserializer before any
interceptor code runs, and answers a deserializer that raises with UNKNOWN
and the exception's class name. So every method gets `decoder(parse)`
instead: it parses, looks for what the wire format lets through but no
handler can use, and returns (not raises) the `InvalidArgument` that refuses
the request; `handlers.wrap` raises it inside the call, where it is mapped
like any domain error. A client stream is checked message by message the
same way.

Refused in every request, whichever field holds it:
- a NUL character in a text field: PostgreSQL cannot store one, and no name,
  id or title needs it (Struct content is JSON, which escapes it);
- an enum number the schema does not name (proto3 keeps unknown numbers);
- NaN or Infinity in a floating-point field or a Struct, which JSON cannot
  hold;
- a Timestamp outside years 1 to 9999, or with nanos out of range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from orchestrator.errors import FieldViolation, InvalidArgument

Parse = Callable[[bytes], Message]
Decode = Callable[[bytes], Message | InvalidArgument]

# upb's reasons (`upb_DecodeStatus_String`) in the client's terms.
_REASONS = {
    "String field had bad UTF-8": "a text field or Struct key is not valid UTF-8",
    "Exceeded upb_DecodeOptions_MaxDepth": "messages or Structs are nested too deeply",
    "Wire format was corrupt": "the bytes are not a protobuf message of the method's type",
}
# Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_MAX_NANOS = 999_999_999
# A field path names a map or Struct key: escaped, so a path stays one
# readable line, and cut, so a huge key cannot make the status huge.
_MAX_KEY_IN_PATH = 40


def decoder(parse: Parse) -> Decode:
    def decode(raw: bytes) -> Message | InvalidArgument:
        try:
            message = parse(raw)
        except DecodeError as error:
            return InvalidArgument(f"request could not be decoded: {_reason(error)}")
        found: Found = []
        _message_problems(message, "", found)
        return InvalidArgument(violations=found) if found else message

    return decode


def _reason(error: DecodeError) -> str:
    # "Error parsing message with type 'orchestrator.tasks.X': <reason>"
    reason = str(error).rpartition(": ")[2]
    return _REASONS.get(reason, reason)


# What the walks below append to.
Found = list[FieldViolation]


def _message_problems(message: Message, path: str, found: Found) -> None:
    for field, value in message.ListFields():
        name = path + field.name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for key, item in value.items():
                where = f"{name}[{_shown(key)}]"
                _value_problems(key_field, key, where, found)
                _value_problems(value_field, item, where, found)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _value_problems(field, item, f"{name}[{index}]", found)
        else:
            _value_problems(field, value, name, found)


def _value_problems(field: FieldDescriptor, value: Any, path: str, found: Found) -> None:
    kind, message_type, enum_type = field.type, field.message_type, field.enum_type
    if message_type is not None:
        special = _WELL_KNOWN.get(message_type.full_name)
        if special is not None:
            special(value, path, found)
        else:
            _message_problems(value, path + ".", found)
    elif enum_type is not None:
        if value not in enum_type.values_by_number:
            found.append(FieldViolation(path, f"{value} is not a {enum_type.name} value"))
    elif kind == FieldDescriptor.TYPE_STRING:
        if "\x00" in value:
            found.append(FieldViolation(path, "must not contain NUL characters"))
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if not math.isfinite(value):
            found.append(FieldViolation(path, "must be a finite number"))


def _json_value_problems(value: struct_pb2.Value, path: str, found: Found) -> None:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            found.append(FieldViolation(path, "must be a JSON number: NaN and Infinity are not"))
    elif kind == "struct_value":
        _struct_problems(value.struct_value, path, found)
    elif kind == "list_value":
        _list_problems(value.list_value, path, found)


def _struct_problems(struct: struct_pb2.Struct, path: str, found: Found) -> None:
    for key, item in struct.fields.items():
        _json_value_problems(item, f"{path}.{_shown(key)}", found)


def _list_problems(values: struct_pb2.ListValue, path: str, found: Found) -> None:
    for index, item in enumerate(values.values):
        _json_value_problems(item, f"{path}[{index}]", found)


def _timestamp_problems(stamp: timestamp_pb2.Timestamp, path: str, found: Found) -> None:
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos <= _MAX_NANOS):
        found.append(FieldViolation(path, "must be a time between the years 1 and 9999"))


def _shown(key: object) -> str:
    text = str(key)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= _MAX_KEY_IN_PATH else text[:_MAX_KEY_IN_PATH] + "…"


_WELL_KNOWN: dict[str, Callable[[Any, str, Found], None]] = {
    "google.protobuf.Struct": _struct_problems,
    "google.protobuf.Value": _json_value_problems,
    "google.protobuf.ListValue": _list_problems,
    "google.protobuf.Timestamp": _timestamp_problems,
}
