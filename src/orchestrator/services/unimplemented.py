"""Servicers that build part of their service. The generated bases answer
every other method with UNIMPLEMENTED (they raise NotImplementedError, which
the error interceptor maps), but their stubs declare the methods abstract."""

from __future__ import annotations

from typing import Any, cast


def partial(servicer: type[Any], *args: Any) -> Any:
    """An instance of `servicer`, whose missing methods answer UNIMPLEMENTED."""
    return cast(Any, servicer)(*args)
