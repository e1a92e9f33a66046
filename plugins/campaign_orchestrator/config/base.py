"""What every config model shares: strict models, identifiers, durations, list shorthands.

Models forbid unknown keys, so a typo is an error naming the field, never a silently ignored
setting; the loader (``config/loader.py``) turns pydantic's errors into ``file:line: field``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic takes YAML's true/false as 1/0: `batch_size: true` would send one message
        # per task. A number field gets a number.
        if isinstance(value, bool) and info.field_name and _number_only(cls, info.field_name):
            raise ValueError(f"{str(value).lower()} is not a number")
        return value


@lru_cache(maxsize=None)
def _number_only(model: type[BaseModel], name: str) -> bool:
    """The field takes int or float, and no bool (or anything) else that true/false could be."""
    leaves, pending = set(), [model.model_fields[name].annotation]
    while pending:
        annotation = pending.pop()
        args = get_args(annotation)
        if args and get_origin(annotation) is not Literal:
            pending.extend(args)
        else:
            leaves.add(annotation)
    return bool(leaves & {int, float}) and not leaves & {bool, Any}


def parse_duration(value: Any) -> timedelta:
    """Accept ``30s``, ``5m``, ``2h``, ``1d``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
        if _ISO_DURATION.match(value):  # ISO 8601 (P2D, PT5M): how a dumped config writes them
            from pydantic import TypeAdapter

            return TypeAdapter(timedelta).validate_python(value)
    raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '2h' or '1d'")


Duration = Annotated[timedelta, Field(json_schema_extra={"type": "string", "examples": ["5m", "2h"]})]


def as_list(value: Any) -> Any:
    """``after: email`` and ``when: {step: email, outcome: opened}`` are lists of one."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


_ORDER_BY_TERM = re.compile(r"^\s*([a-z_][a-z0-9_]{0,62})(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_order_by(value: str) -> list[tuple[str, bool]]:
    """``"lifetime_value desc, created_at"`` -> ``[("lifetime_value", True), ("created_at", False)]``
    (column, descending). Raises ValueError naming the term that is not ``column [asc|desc]``."""
    terms = []
    for term in value.split(","):
        match = _ORDER_BY_TERM.match(term)
        if not match:
            raise ValueError(
                f"order_by {value!r}: {term.strip()!r} is not 'column', 'column asc' or 'column desc' "
                "(column names: lower-case letters, digits and _)"
            )
        terms.append((match.group(1), (match.group(2) or "asc").lower() == "desc"))
    return terms


def _check_order_by(value: str | None) -> str | None:
    if value is not None:
        parse_order_by(value)
    return value


OrderBy = Annotated[str | None, AfterValidator(_check_order_by)]
"""An ``order_by`` string, checked to be ``column [asc|desc], ...``."""
ListOf = BeforeValidator(as_list)
"""Put in ``Annotated[list[X], ListOf]``: a single value is a list of one."""
