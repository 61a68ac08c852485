"""Between protobuf well-known types and plain Python values."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from orchestrator.structs import to_dict

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

Wire = TypeVar("Wire", bound=int)
Domain = TypeVar("Domain", bound=StrEnum)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def from_timestamp(message: Any, field: str) -> datetime | None:
    """An optional Timestamp field of `message` as an aware UTC datetime."""
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    message = struct_pb2.Struct()
    message.update(value)
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """Numbers stay doubles, as JSON numbers are in CEL (DESIGN §4); the SDKs
    give handlers whole numbers as ints. A walk of our own:
    `json_format.MessageToDict` takes twice as long, and the NaN and
    Infinity it would refuse were refused when the request was decoded."""
    return to_dict(message, whole_as_int=False)


# Enums on the wire are the domain's names behind the enum's prefix, which is
# its zero value's name without UNSPECIFIED (`TASK_STATUS_` + `QUEUED`).


def wire_enum(enum: _EnumTypeWrapper[Wire], value: StrEnum | None) -> Wire:
    """None is the zero `…_UNSPECIFIED`."""
    return enum.Value(_prefix(enum) + (value.value if value is not None else "UNSPECIFIED"))


def domain_enum(enum: _EnumTypeWrapper[Wire], number: int, domain: type[Domain]) -> Domain | None:
    """None for the zero `…_UNSPECIFIED` (in a filter: any). Numbers the
    schema does not name never get here: `services.decoding` refused them."""
    if number == 0:
        return None
    return domain(enum.DESCRIPTOR.values_by_number[number].name.removeprefix(_prefix(enum)))


@functools.cache
def _prefix(enum: _EnumTypeWrapper[Any]) -> str:
    return enum.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")
