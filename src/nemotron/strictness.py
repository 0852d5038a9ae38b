"""What every typed model of nemotron shares: a boolean is never taken for a number.

Pydantic's lax mode reads ``true`` as ``1`` for an ``int`` field (``train.train_iters=true``
would train one step). Models derive from :class:`NoBoolNumbers` to refuse that, with the
field named in the error; fields that accept booleans (``bool``, ``int | bool``) are unchanged.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, model_validator


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in _members(arg))
    return (annotation,)


@cache
def _numbers_only(annotation: Any) -> bool:
    """True when the annotation takes int or float and no boolean."""
    members = _members(annotation)
    takes_bool = any(
        m is bool or m is Any
        or (get_origin(m) is Literal and any(isinstance(a, bool) for a in get_args(m)))
        for m in members
    )
    return not takes_bool and any(m in (int, float) for m in members)


class NoBoolNumbers(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(value, bool) else None
            if field is None:
                continue
            try:
                numbers_only = _numbers_only(field.annotation)
            except TypeError:  # an unhashable annotation: not a plain number type
                numbers_only = False
            if numbers_only:
                raise ValueError(f"{name}={str(value).lower()} is a boolean; give a number")
        return data
