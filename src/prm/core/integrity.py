"""The last line between a database constraint and a 500.

Services check what they can (an id in a body belongs to the caller's organisation, a number is
free) and raise domain errors. When a constraint still fires (a check that was missed, a race),
`problem_for` turns the `IntegrityError` into a problem naming the column, never quoting a value:
PostgreSQL's message and DETAIL carry the values (an MRN, a phone number), so neither is used.

* foreign key, on insert/update of the referencing row → 422 `unknown_reference` naming the column;
  on delete/update of a referenced row (also `ON DELETE RESTRICT`) → 409 `still_referenced`
* unique or exclusion → 409 `conflict`
* not null → 422 `validation_failed` naming the column; check → 422 naming the constraint
"""

from __future__ import annotations

from typing import Any

from psycopg import errors as pg
from sqlalchemy.exc import IntegrityError

from prm.core.errors import Conflict, DomainError, ValidationFailed
from prm.core.models import Base


def _foreign_key(constraint: str | None) -> list[str]:
    """The referencing columns of a foreign key, from the models' metadata."""
    for table in Base.metadata.tables.values():
        for fk in table.foreign_key_constraints:
            if fk.name == constraint:
                return [c.name for c in fk.columns]
    return []


def _columns_of(constraint: str | None) -> list[str]:
    for table in Base.metadata.tables.values():
        for c in table.constraints:
            if c.name == constraint:
                return [col.name for col in getattr(c, "columns", [])]
        for index in table.indexes:
            if index.name == constraint:
                return [col.name for col in index.columns]
    return []


def problem_for(exc: IntegrityError) -> DomainError | None:
    orig: Any = exc.orig
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    primary = getattr(diag, "message_primary", None) or ""
    if isinstance(orig, pg.RestrictViolation) or (
        isinstance(orig, pg.ForeignKeyViolation) and primary.startswith("update or delete on")
    ):  # deleting (or re-keying) a row that others still reference
        return Conflict("This record is still referenced by other records", code="still_referenced")
    if isinstance(orig, pg.ForeignKeyViolation):
        columns = [c for c in _foreign_key(constraint) if c != "org_id"] or _foreign_key(constraint)
        field = ".".join(columns) or "body"
        return ValidationFailed.field(field, "refers to nothing in this organisation", code="unknown_reference")
    if isinstance(orig, pg.UniqueViolation | pg.ExclusionViolation):
        columns = _columns_of(constraint)
        errors = [{"field": c, "message": "already in use", "type": "conflict"} for c in columns if c != "org_id"]
        return Conflict("Conflicts with an existing record", code="conflict", errors=errors or None)
    if isinstance(orig, pg.NotNullViolation):
        return ValidationFailed.field(getattr(diag, "column_name", None) or "body", "is required")
    if isinstance(orig, pg.CheckViolation):
        return ValidationFailed.field(constraint or "body", "is not an allowed value", code="check_violation")
    return None
