"""Shared base for the API models: camelCase on the wire, snake_case in Python.

Every spec and status model derives from :class:`ApiModel` so that what the
controllers read and write is exactly what the CRD schema admits.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A model serialised with camelCase keys, rejecting unknown fields.

    ``extra="forbid"`` mirrors the CRD's structural schema: a field the schema
    does not know would be pruned by the API server, so it must not exist here.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The object as the API server stores it (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def one_line(exc: ValidationError, *, root: str) -> str:
    """A validation error as one line, for a condition or a termination message: the first problem
    and where (under ``root``), and how many more (pydantic's own text spans lines and ends in a URL)."""
    first = exc.errors()[0]
    where = ".".join([root, *(str(p) for p in first["loc"])])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
