"""Reading what a person typed into a form, with problems named by field the
way the engine names its own, so that a page shows both the same way."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.engine.validation import MAX_DEPTH
from orchestrator.errors import InvalidArgument

_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def json_object(text: str, field: str) -> dict[str, Any]:
    """The JSON object typed in `field` (nothing typed: `{}`);
    InvalidArgument naming the field when it is not one."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise InvalidArgument.field(field, f"is not JSON: {error.msg} at {where}") from None
    except RecursionError:
        # The decoder gives up near a thousand levels; the engine's own limit
        # is far lower, so this is its refusal, said before it is asked.
        raise InvalidArgument.field(field, f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), "a number")
        raise InvalidArgument.field(field, f'must be a JSON object, such as {{"n": 1}}, not {kind}')
    return value
