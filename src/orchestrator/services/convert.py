"""Between protobuf well-known types and plain Python values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    message = struct_pb2.Struct()
    message.update(value)
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """Numbers stay doubles, as JSON numbers are in CEL (DESIGN §4); the SDKs
    give handlers whole numbers as ints (`orchestrator.structs`)."""
    result = json_format.MessageToDict(message)
    assert isinstance(result, dict)
    return result
