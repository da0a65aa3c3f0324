"""One statement for a unit of work's rows and jobs: data-modifying CTEs behind an optional gate.

A booking writes the appointment, its history entry, its reminders (each with a queued job), an
audit entry, the domain event and a job per subscriber. Through the ORM that is one round trip per
table plus one for the jobs; here it is ONE statement:

    WITH gate AS (INSERT INTO appointments ... ON CONFLICT DO NOTHING RETURNING *),
         jobs AS (SELECT id, row_number() OVER (ORDER BY id) AS ord FROM unnest(
                    CASE WHEN EXISTS (SELECT FROM gate) THEN procrastinate_defer_jobs_v1(ARRAY[...]) END) AS id),
         w1 AS (INSERT INTO appointment_changes (...) SELECT ... WHERE EXISTS (SELECT FROM gate)),
         w2 AS (INSERT INTO appointment_reminders (..., job_id) SELECT ..., (SELECT id FROM jobs WHERE ord = 1)
                WHERE EXISTS (SELECT FROM gate)),
         ...
    SELECT gate.* FROM gate

When the gate writes nothing (an exclusion constraint refused the appointment), nothing else is
written and no job is queued: the statement returns no row and the caller answers 409. Foreign keys
between the rows hold: PostgreSQL checks them at the end of the statement.

Values are cast to their column's type in the SQL (JSON serialised with orjson); Python-side column
defaults (`default=clock.now`, `default=uuid.uuid4`, ...) are applied here as the ORM would. The SQL
text of each shape (tables, columns, number of jobs) is built once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import String, Table, TextClause, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import JSON

from prm.core import jobs

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class JobRef:
    """A plain job queued in the batch; `Batch.insert(..., job=ref)` stores its id in a column."""

    index: int


@dataclass
class _Row:
    table: Table
    values: dict[str, Any]
    job: JobRef | None = None
    job_column: str = "job_id"


@dataclass
class Batch:
    """Rows to insert and jobs to queue, sent by `execute` as one statement."""

    rows: list[_Row] = field(default_factory=list)
    pending: list[jobs.PendingJob] = field(default_factory=list)

    def insert(self, table: Any, values: dict[str, Any], *, job: JobRef | None = None,
               job_column: str = "job_id") -> None:
        """Insert one row of `table` (a Table or a mapped class); with `job`, its `job_column` gets that
        job's id."""
        self.rows.append(_Row(_table(table), values, job, job_column))

    def defer(self, name: str, *, schedule_at: Any = None, only_if: str | None = None, **kwargs: Any) -> JobRef:
        """Queue job `name` (see `jobs.defer_with_flush` for `only_if`)."""
        self.pending.append(jobs.pending_job(name, schedule_at=schedule_at, only_if=only_if, **kwargs))
        return JobRef(sum(1 for p in self.pending if p.only_if is None) - 1 if only_if is None else -1)

    async def execute(self, session: AsyncSession, gate: tuple[Any, dict[str, Any]] | None = None,
                      *, returning: Any = None) -> Any:
        """Send everything in one statement. With `gate` = (table, values), that row is inserted first
        with `ON CONFLICT DO NOTHING` and the rest only when it was written; `returning` (a mapped
        class) gets the gate's row back as an ORM instance, None when the gate wrote nothing."""
        if not self.rows and not self.pending and gate is None:
            return None
        gate_row = _Row(_table(gate[0]), gate[1]) if gate is not None else None
        statement, params = _render(gate_row, self.rows, self.pending)
        if gate_row is not None and returning is not None:
            return (await session.execute(select(returning).from_statement(statement), params)).scalar_one_or_none()
        await session.execute(statement, params)
        return None


def _table(target: Any) -> Table:
    table = target if isinstance(target, Table) else target.__table__
    assert isinstance(table, Table)
    return table


_TYPES: dict[tuple[str, str], str] = {}
_STATEMENTS: dict[tuple[Any, ...], TextClause] = {}


def _sql_type(table: Table, column: str) -> str:
    """The type to cast a parameter to: the column's, with strings left unbounded (a cast to
    VARCHAR(n) would silently cut a long value; the insert then refuses it as the ORM's would)."""
    key = (table.name, column)
    if key not in _TYPES:
        kind = table.c[column].type
        _TYPES[key] = "TEXT" if isinstance(kind, String) else kind.compile(dialect=_DIALECT)
    return _TYPES[key]


def _complete(row: _Row) -> dict[str, Any]:
    """The row's values with the Python-side column defaults the ORM would apply."""
    values = dict(row.values)
    for column in row.table.columns:
        if column.key in values or column.default is None or (row.job is not None and column.key == row.job_column):
            continue
        default = column.default
        if getattr(default, "is_sequence", False) or getattr(default, "is_clause_element", False):
            continue
        arg = default.arg  # type: ignore[attr-defined]
        values[column.key] = arg(None) if getattr(default, "is_callable", False) else arg
    return values


def _param(table: Table, column: str, value: Any) -> Any:
    if value is not None and isinstance(table.c[column].type, JSON):
        return orjson.dumps(value, default=str).decode()
    return value


def _render(gate: _Row | None, rows: list[_Row], pending: list[jobs.PendingJob]) -> tuple[TextClause, dict[str, Any]]:
    params: dict[str, Any] = {}
    completed = [_complete(row) for row in rows]
    gate_values = _complete(gate) if gate is not None else None
    array, job_params, _ = jobs.jobs_array(pending, prefix="j") if pending else ("", {}, 0)
    params.update(job_params)
    shape = (
        (gate.table.name, tuple(gate_values)) if gate is not None and gate_values is not None else None,
        tuple((row.table.name, tuple(values), row.job.index if row.job else None, row.job_column)
              for row, values in zip(rows, completed, strict=True)),
        array,
    )
    for n, values in enumerate(completed):
        table = rows[n].table
        params.update({f"w{n}_{i}": _param(table, key, value) for i, (key, value) in enumerate(values.items())})
    if gate is not None and gate_values is not None:
        params.update({f"g_{i}": _param(gate.table, key, value) for i, (key, value) in enumerate(gate_values.items())})
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _STATEMENTS[shape] = text(_sql(gate, gate_values, rows, completed, array))
    return statement, params


def _columns(table: Table, keys: Any) -> list[str]:
    """Quoted column names (a key that is not a column of `table` fails here: only the metadata's
    names reach the SQL)."""
    return [_DIALECT.identifier_preparer.quote(table.c[key].name) for key in keys]


def _select_list(table: Table, prefix: str, values: dict[str, Any]) -> str:
    return ", ".join(f"CAST(:{prefix}{i} AS {_sql_type(table, key)})" for i, key in enumerate(values))


# The SQL below is assembled from the metadata's table and column names, the jobs' rendered array
# (parameters only) and integers; every value travels as a bound parameter.
def _sql(gate: _Row | None, gate_values: dict[str, Any] | None, rows: list[_Row],
         completed: list[dict[str, Any]], array: str) -> str:
    ctes = []
    only = ""
    if gate is not None and gate_values is not None:
        ctes.append(f"gate AS (INSERT INTO {gate.table.name} ({', '.join(_columns(gate.table, gate_values))}) "
                    f"SELECT {_select_list(gate.table, 'g_', gate_values)} ON CONFLICT DO NOTHING RETURNING *)")
        only = " WHERE EXISTS (SELECT FROM gate)"
    if array:
        deferred = f"procrastinate_defer_jobs_v1({array})"
        if gate is not None:
            deferred = f"CASE WHEN EXISTS (SELECT FROM gate) THEN {deferred} END"
        ctes.append(f"jobs AS (SELECT id, row_number() OVER (ORDER BY id) AS ord FROM unnest({deferred}) AS id)")  # noqa: S608
    for n, (row, values) in enumerate(zip(rows, completed, strict=True)):
        columns = _columns(row.table, values)
        select_list = _select_list(row.table, f"w{n}_", values)
        if row.job is not None:
            columns += _columns(row.table, [row.job_column])
            select_list += f", (SELECT id FROM jobs WHERE ord = {int(row.job.index) + 1})"  # noqa: S608
        ctes.append(f"w{n} AS (INSERT INTO {row.table.name} ({', '.join(columns)}) SELECT {select_list}{only})")
    counted = ", (SELECT count(*) FROM jobs) AS queued_jobs" if array else ""
    tail = f"SELECT gate.*{counted} FROM gate" if gate is not None else f"SELECT 1{counted}"  # noqa: S608
    return "WITH " + ",\n".join(ctes) + "\n" + tail
