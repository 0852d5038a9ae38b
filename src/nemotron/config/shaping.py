"""Which parts of a config shape a stage's output: the projection an output's identity hashes.

Every field of the typed configs is output-shaping unless its declaration says otherwise with
:func:`runtime` (where or how the job runs: resources, logging, intervals, worker counts) or
:func:`reference` (an input named by a reference string; the input counts by the identity it
resolves to, never by the string). :func:`output_projection` walks a decoded config and keeps
the output-shaping fields only; ``nemotron.lineage.hashing.output_identity`` hashes that.

Declaring it on the field keeps the decision beside the field: a new field shapes the output
until someone says why it does not. Imports only pydantic and the standard library.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

_MARK = "nemotron_identity"


def runtime(default: Any = ..., *, why: str, **kwargs: Any) -> Any:
    """A field that says where or how a job runs, not what it produces (left out of identity)."""
    return Field(default, json_schema_extra={_MARK: f"runtime: {why}"}, **kwargs)


def reference(default: Any = None, **kwargs: Any) -> Any:
    """A reference to an input (``NAME:VERSION`` or a path): counts by its resolved identity."""
    return Field(default, json_schema_extra={_MARK: "input reference"}, **kwargs)


def shapes_output(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return not (isinstance(extra, dict) and _MARK in extra)


def why_not_shaping(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return str(extra[_MARK]) if isinstance(extra, dict) and _MARK in extra else None


def output_projection(model: BaseModel) -> dict[str, Any]:
    """The output-shaping fields of ``model``, recursively, as plain JSON-able values."""
    projected: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        if shapes_output(info):
            projected[name] = _project(getattr(model, name))
    return projected


def _project(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return output_projection(value)
    if isinstance(value, (list, tuple)):
        return [_project(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _project(item) for key, item in value.items()}
    return value


def left_out(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every field left out of the projection below ``model``: dotted key -> the reason."""
    import types
    import typing

    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        reason = why_not_shaping(info)
        if reason is not None:
            found[key] = reason
            continue
        ann = info.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
        if typing.get_origin(ann) is list:
            ann = typing.get_args(ann)[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found.update(left_out(ann, f"{key}."))
    return found
