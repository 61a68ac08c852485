"""`services.decoding`: whatever bytes arrive, the decoder answers with the
request or with the InvalidArgument that refuses it, never an exception;
and what it lets through holds nothing a handler cannot use."""

from __future__ import annotations

import math

import pytest
from google.protobuf import message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidArgument
from orchestrator.proto import tasks_pb2
from orchestrator.services.decoding import decoder
from tests.support.messages import messages, service_methods

REQUEST_TYPES = sorted(
    {m.input_type.full_name: m.input_type for m in service_methods()}.values(),
    key=lambda d: d.full_name,
)
SETTINGS = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decode_as(descriptor: object, raw: bytes) -> Message | InvalidArgument:
    return decoder(message_factory.GetMessageClass(descriptor).FromString)(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("descriptor", REQUEST_TYPES, ids=lambda d: d.full_name)
@SETTINGS
@given(raw=st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused(descriptor: object, raw: bytes) -> None:
    result = decode_as(descriptor, raw)

    if isinstance(result, InvalidArgument):
        assert result.message.startswith("request could not be decoded: ") or result.violations
        assert "upb" not in result.message and "DecodeError" not in result.message


@pytest.mark.parametrize("descriptor", REQUEST_TYPES, ids=lambda d: d.full_name)
@SETTINGS
@given(data=st.data())
def test_what_is_let_through_holds_no_nul_nan_or_unknown_enum(
    descriptor: object, data: st.DataObject
) -> None:
    request = data.draw(messages(descriptor))  # type: ignore[arg-type]

    result = decode_as(descriptor, request.SerializeToString())

    if isinstance(result, Message):
        assert not _unusable(result)
    elif not result.violations:  # Structs nested past protobuf's own limit
        assert "nested too deeply" in result.message
    else:
        assert _unusable(request)


def _unusable(message: Message) -> list[str]:
    """What a handler could not use, found by a walk of its own."""
    found: list[str] = []
    for field, value in message.ListFields():
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            items = [part for pair in value.items() for part in pair]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        found += [field.name for item in items if _is_unusable(field, item)]
    return found


def _is_unusable(field: FieldDescriptor, item: object) -> bool:
    if isinstance(item, str):
        return "\x00" in item
    if isinstance(item, struct_pb2.Struct | struct_pb2.ListValue | struct_pb2.Value):
        return _non_finite(item)
    if isinstance(item, timestamp_pb2.Timestamp):
        return not (0 <= item.nanos < 10**9 and -62135596800 <= item.seconds < 253402300800)
    if isinstance(item, Message):
        return bool(_unusable(item))
    return field.enum_type is not None and item not in field.enum_type.values_by_number


def _non_finite(value: Message) -> bool:
    if isinstance(value, struct_pb2.Value):
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            return not math.isfinite(value.number_value)
        inner = getattr(value, kind) if kind in ("struct_value", "list_value") else None
        return inner is not None and _non_finite(inner)
    if isinstance(value, struct_pb2.Struct):
        return any(_non_finite(v) for v in value.fields.values())
    assert isinstance(value, struct_pb2.ListValue)
    return any(_non_finite(v) for v in value.values)


def test_the_refusal_names_the_field_and_the_problem() -> None:
    request = tasks_pb2.ListTasksRequest(type="a\x00b")
    request.status = 9  # type: ignore[assignment]

    result = decode_as(tasks_pb2.ListTasksRequest.DESCRIPTOR, request.SerializeToString())

    assert isinstance(result, InvalidArgument)
    assert [(v.field, v.description) for v in result.violations] == [
        ("status", "9 is not a TaskStatus value"),
        ("type", "must not contain NUL characters"),
    ]
