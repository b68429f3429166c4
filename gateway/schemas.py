"""JSON Schemas of proto messages, derived from their descriptors for the OpenAPI document.

The REST bodies are the protos' canonical JSON mapping (google.protobuf.json_format), so their
schemas come from the same descriptors instead of being written twice: lowerCamelCase names,
enums by name, 64-bit integers as strings (numbers are accepted too), messages by reference.
The protos use no google.protobuf well-known types, whose JSON forms are special.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": ["integer", "string"], "format": "int64"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _INT64,
    FieldDescriptor.TYPE_FIXED64: _INT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}


def ref(descriptor: Descriptor) -> dict[str, str]:
    """A reference to the component schema of `descriptor`."""
    return {"$ref": f"#/components/schemas/{descriptor.full_name}"}


def _field(field: FieldDescriptor, pending: list[Descriptor]) -> dict[str, Any]:
    if field.message_type is not None:
        pending.append(field.message_type)
        schema: dict[str, Any] = ref(field.message_type)
    elif field.enum_type is not None:
        schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    else:
        schema = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": schema}
    return schema


def message_schemas(*roots: Descriptor) -> dict[str, dict[str, Any]]:
    """Component schemas for `roots` and every message they contain, keyed by full name."""
    schemas: dict[str, dict[str, Any]] = {}
    pending = list(roots)
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in schemas:
            continue
        schemas[descriptor.full_name] = {
            "type": "object",
            "title": descriptor.full_name,
            "properties": {f.json_name: _field(f, pending) for f in descriptor.fields},
        }
    return schemas
