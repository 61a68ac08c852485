"""orchestrator.status: domain errors to gRPC status and back, through a real
in-process grpc.aio server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from orchestrator import errors
from orchestrator.errors import BY_CODE, FieldViolation, InvalidArgument, OrchestratorError
from orchestrator.status import from_rpc_error, to_status

DETAILS_KEY = "grpc-status-details-bin"
VIOLATIONS = (
    FieldViolation("definition.nodes[2].id", "duplicate id 'a'"),
    FieldViolation("input", "must be a JSON object: ünïcödé ✓"),
)


def subclasses(cls: type[OrchestratorError]) -> list[type[OrchestratorError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


# The server's classes; refinements elsewhere (the CLI's NotLoggedIn is an
# Unauthenticated) share their parent's code, and are here only once some
# other test module has imported them.
ERROR_CLASSES = sorted(
    (cls for cls in subclasses(OrchestratorError) if cls.__module__ == errors.__name__),
    key=lambda cls: cls.__name__,
)


def rich_status(status: grpc.Status) -> status_pb2.Status:
    values = [v for k, v in status.trailing_metadata if k == DETAILS_KEY]
    assert len(values) == 1
    return status_pb2.Status.FromString(values[0])


def packed_violations(proto: status_pb2.Status) -> list[FieldViolation]:
    found = []
    for detail in proto.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        found += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return found


def test_every_error_class_has_its_own_code() -> None:
    assert ERROR_CLASSES, "no OrchestratorError subclasses found"
    assert sorted(BY_CODE.values(), key=lambda cls: cls.__name__) == ERROR_CLASSES
    assert len({cls.grpc_code for cls in ERROR_CLASSES}) == len(ERROR_CLASSES)
    assert grpc.StatusCode.OK not in BY_CODE
    assert grpc.StatusCode.UNKNOWN not in BY_CODE


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_to_status_gives_code_and_message(cls: type[OrchestratorError]) -> None:
    status = to_status(cls("something specific happened"))
    assert status.code == cls.grpc_code
    assert status.details == "something specific happened"
    proto = rich_status(status)
    assert proto.code == cls.grpc_code.value[0]
    assert proto.message == "something specific happened"
    assert list(proto.details) == []


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_default_message_is_the_docstring(cls: type[OrchestratorError]) -> None:
    assert cls.__doc__
    assert to_status(cls()).details == cls.__doc__.strip()


def test_invalid_argument_packs_bad_request() -> None:
    status = to_status(InvalidArgument("bad definition", violations=VIOLATIONS))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "bad definition"
    assert packed_violations(rich_status(status)) == list(VIOLATIONS)


def test_invalid_argument_message_defaults_to_its_violations() -> None:
    error = InvalidArgument.field("name", "must not be empty")
    assert error.message == "name: must not be empty"
    assert packed_violations(rich_status(to_status(error))) == [
        FieldViolation("name", "must not be empty")
    ]


# -- the round trip through a real server -------------------------------------

SERVICE = "test.Errors"


def _error_named(name: str) -> OrchestratorError:
    if name == "violations":
        return InvalidArgument("bad request", violations=VIOLATIONS)
    cls = getattr(errors, name)
    return cls(f"{name} raised on purpose")


async def _raise(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    name = request.decode()
    if name == "mismatch":  # rich status that disagrees with the status line
        status = to_status(InvalidArgument("one thing", violations=VIOLATIONS))
        await context.abort(status.code, "another", status.trailing_metadata)
    if name == "data-loss":  # a code no domain error stands for
        await context.abort(grpc.StatusCode.DATA_LOSS, "disk on fire")
    status = to_status(_error_named(name))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")


@pytest.fixture
async def errors_channel() -> AsyncIterator[aio.Channel]:
    server = aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_raise)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Raise": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def call(channel: aio.Channel, name: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/Raise")(name.encode(), timeout=10)
    return caught.value


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
async def test_round_trip_gives_back_the_same_class(
    errors_channel: aio.Channel, cls: type[OrchestratorError]
) -> None:
    error = from_rpc_error(await call(errors_channel, cls.__name__))
    assert type(error) is cls
    assert error.message == f"{cls.__name__} raised on purpose"


async def test_round_trip_keeps_violations(errors_channel: aio.Channel) -> None:
    error = from_rpc_error(await call(errors_channel, "violations"))
    assert isinstance(error, InvalidArgument)
    assert error.message == "bad request"
    assert error.violations == VIOLATIONS


async def test_round_trip_of_an_unmapped_code(errors_channel: aio.Channel) -> None:
    error = from_rpc_error(await call(errors_channel, "data-loss"))
    assert type(error) is OrchestratorError
    assert error.message == "DATA_LOSS: disk on fire"


async def test_rich_status_that_disagrees_is_ignored(errors_channel: aio.Channel) -> None:
    error = from_rpc_error(await call(errors_channel, "mismatch"))
    assert isinstance(error, InvalidArgument)
    assert error.message == "another"
    assert error.violations == ()
