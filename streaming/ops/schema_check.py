"""A small JSON Schema validator for the subset the kept statement schema uses (no dependency).

``jsonschema`` is not among the project's locked dependencies, so statements are checked by this validator of the
keywords ``statement.schema.json`` uses: ``type`` (object, array, string), ``enum``, ``const``, ``required``,
``properties``, ``additionalProperties: false``, ``items``, ``minItems``, ``minLength``, ``maxLength``, ``pattern``,
``allOf`` and ``if``/``then``. Any other keyword in the schema is an error, so the schema cannot grow a rule this
validator silently ignores.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

KNOWN = {"$schema", "$id", "title", "description", "type", "enum", "const", "required", "properties",
         "additionalProperties", "items", "minItems", "minLength", "maxLength", "pattern", "allOf", "if", "then"}
_TYPES = {"object": dict, "array": list, "string": str}


@lru_cache(maxsize=1)
def statement_schema() -> dict[str, Any]:
    """The kept DSA statement-of-reasons schema (``flagstream/streaming/ops/statement.schema.json``)."""
    return json.loads(resources.files("flagstream.streaming.ops").joinpath("statement.schema.json").read_text("utf-8"))


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: problem`` lines (empty: valid).

    Raises:
        ValueError: the schema uses a keyword this validator does not implement.
    """
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} at {path} are not supported by this validator")
    out: list[str] = []
    if "type" in schema and not isinstance(value, _TYPES[schema["type"]]):
        return [f"{path}: expected {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of the allowed values")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{path}: unexpected field {k}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                out += errors(value[k], sub, f"{path}.{k}")
    for sub in schema.get("allOf", []):
        if "if" in sub:
            if not errors(value, sub["if"], path):
                out += errors(value, sub.get("then", {}), path)
        else:
            out += errors(value, sub, path)
    return out


__all__ = ["errors", "statement_schema"]
