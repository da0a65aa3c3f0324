"""One statement for a unit of work's rows and jobs: data-modifying CTEs behind an optional gate.

A booking writes the appointment, its history entry, its reminders, an audit entry, the domain event
and a job per subscriber (a row may also take the id of a job queued with it: `insert(..., job=)`).
Through the ORM that is one round trip per table plus one for the jobs; here it is ONE statement:

    WITH gate AS (INSERT INTO appointments (...) SELECT r.... FROM jsonb_populate_record(NULL::appointments,
                    :gate) AS r ON CONFLICT DO NOTHING RETURNING true AS written),
         jobs AS (SELECT id, row_number() OVER (ORDER BY id) AS ord FROM unnest(
                    CASE WHEN EXISTS (SELECT FROM gate) THEN procrastinate_defer_jobs_v1(ARRAY(...)) END) AS id),
         w0 AS (INSERT INTO appointment_changes (...) SELECT r.... FROM jsonb_populate_record(..., :w0) AS r
                WHERE EXISTS (SELECT FROM gate)),
         w1 AS (INSERT INTO appointment_reminders (...) SELECT r.... FROM jsonb_populate_record(..., :w1) AS r
                WHERE EXISTS (SELECT FROM gate)),
         ...
    SELECT gate.written FROM gate

When the gate writes nothing (an exclusion constraint refused the appointment), nothing else is
written and no job is queued: the statement returns no row and the caller answers 409. Foreign keys
between the rows hold: PostgreSQL checks them at the end of the statement.

Each row travels as one JSON parameter (serialised by orjson) that `jsonb_populate_record` turns into
the table's row type, each value through its column type's input (a string too long for its column is
refused, never cut); the jobs likewise (`jobs.jobs_array`). So the statement has a handful of
parameters and a short text, whose parsed form psycopg keeps (it re-parses statements of more than 50
parameters or 4 kB on every execution). Python-side column defaults (`default=clock.now`,
`default=uuid.uuid4`, ...) are applied here as the ORM would. The SQL text of each shape (tables,
columns, number of jobs) is built once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from prm.core import jobs

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Guard:
    """A one-row SELECT evaluated first in the statement (`sql`, with its own :parameters in `params`);
    the gate's row is inserted only when `condition` (SQL over its columns, as `guard.<column>`)
    holds. Its `columns` come back with the result, whether or not the gate wrote anything."""

    sql: str
    params: dict[str, Any]
    condition: str
    columns: tuple[str, ...]


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
        statement, params, gate_values = _render(gate_row, self.rows, self.pending)
        if self.pending:
            jobs.queued(session, (p.name for p in self.pending))
        if gate_row is not None and returning is not None:
            written = (await session.execute(statement, params)).scalar_one_or_none()
            return None if written is None else _persistent(session, returning, gate_row.table, gate_values)
        await session.execute(statement, params)
        return None

    async def execute_guarded(self, session: AsyncSession, gate: tuple[Any, dict[str, Any]], guard: Guard, *,
                              returning: Any) -> tuple[Any, Any]:
        """`execute` with the gate's insert (and so everything) conditional on `guard`: returns the
        gate's row as a `returning` instance (None when nothing was written) and the guard's row."""
        gate_row = _Row(_table(gate[0]), gate[1])
        statement, params, gate_values = _render(gate_row, self.rows, self.pending, guard)
        params.update(guard.params)
        if self.pending:
            jobs.queued(session, (p.name for p in self.pending))
        row = (await session.execute(statement, params)).one()
        written = None if row[0] is None else _persistent(session, returning, gate_row.table, gate_values)
        return written, tuple(row[1:1 + len(guard.columns)])


def _persistent(session: AsyncSession, mapped: Any, table: Table, values: dict[str, Any] | None) -> Any:
    """The gate's row, just inserted, as a persistent `mapped` instance in `session` without reading it
    back: the statement wrote exactly `values` (Python defaults applied) and NULL in every other
    column (`_sql` refuses a gate whose omitted columns have a server default), so these are its
    values. Reading the row back cost more than the rest of the booking's Python (result metadata
    for its every column, ORM loading)."""
    assert values is not None
    instance = mapped(**{col.key: values.get(col.key) for col in table.columns})
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


def _table(target: Any) -> Table:
    table = target if isinstance(target, Table) else target.__table__
    assert isinstance(table, Table)
    return table


_STATEMENTS: dict[tuple[Any, ...], TextClause] = {}


def _complete(row: _Row) -> dict[str, Any]:
    """The row's values with the Python-side column defaults the ORM would apply."""
    values = dict(row.values)
    for col in row.table.columns:
        if col.key in values or col.default is None or (row.job is not None and col.key == row.job_column):
            continue
        default = col.default
        if getattr(default, "is_sequence", False) or getattr(default, "is_clause_element", False):
            continue
        arg = default.arg  # type: ignore[attr-defined]
        values[col.key] = arg(None) if getattr(default, "is_callable", False) else arg
    return values


def _render(gate: _Row | None, rows: list[_Row], pending: list[jobs.PendingJob],
            guard: Guard | None = None) -> tuple[TextClause, dict[str, Any], dict[str, Any] | None]:
    """The statement (built once per shape) and its parameters: one JSON document per row, the jobs
    as `jobs.jobs_array` gives them. Few parameters and a short text: psycopg keeps its parsed form."""
    completed = [_complete(row) for row in rows]
    gate_values = _complete(gate) if gate is not None else None
    array, params, _ = jobs.jobs_array(pending, prefix="_b") if pending else ("", {}, 0)
    params.update({f"w{n}": jobs.json_text(values) for n, values in enumerate(completed)})
    if gate_values is not None:
        params["gate"] = jobs.json_text(gate_values)
    shape = (
        (gate.table.name, tuple(gate_values)) if gate is not None and gate_values is not None else None,
        tuple((row.table.name, tuple(values), row.job.index if row.job else None, row.job_column)
              for row, values in zip(rows, completed, strict=True)),
        array,
        (guard.sql, guard.condition, guard.columns) if guard is not None else None,
    )
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _STATEMENTS[shape] = text(_sql(gate, gate_values, rows, completed, array, guard))
    return statement, params, gate_values


def _columns(table: Table, keys: Any) -> list[str]:
    """Quoted column names (a key that is not a column of `table` fails here: only the metadata's
    names reach the SQL)."""
    return [_DIALECT.identifier_preparer.quote(table.c[key].name) for key in keys]


def _from_json(table: Table, parameter: str) -> str:
    """A row of `table` read from a JSON parameter: each value goes through its column type's input,
    so a string too long for its column is refused, never cut."""
    return f"jsonb_populate_record(CAST(NULL AS {table.name}), CAST(:{parameter} AS jsonb)) AS r"


# The SQL below is assembled from the metadata's table and column names, the jobs' rendered array
# (placeholders only) and integers; every value travels as a bound parameter.
def _sql(gate: _Row | None, gate_values: dict[str, Any] | None, rows: list[_Row],
         completed: list[dict[str, Any]], array: str, guard: Guard | None = None) -> str:
    ctes = []
    only = ""
    if guard is not None:
        ctes.append(f"guard AS MATERIALIZED ({guard.sql})")
    if gate is not None and gate_values is not None:
        defaulted = [col.name for col in gate.table.columns if col.key not in gate_values and col.server_default]
        # the gate's row is rebuilt from its values (`_persistent`): no column may get a server default
        assert not defaulted, f"{gate.table.name}: give {defaulted} a value (they have server defaults)"
        columns = _columns(gate.table, gate_values)
        source = f"SELECT {', '.join('r.' + c for c in columns)} FROM {_from_json(gate.table, 'gate')}"  # noqa: S608
        if guard is not None:
            source += f", guard WHERE {guard.condition}"
        ctes.append(f"gate AS (INSERT INTO {gate.table.name} ({', '.join(columns)}) {source} "
                    "ON CONFLICT DO NOTHING RETURNING true AS written)")
        only = " WHERE EXISTS (SELECT FROM gate)"
    if array:
        deferred = f"procrastinate_defer_jobs_v1({array})"
        if gate is not None:
            deferred = f"CASE WHEN EXISTS (SELECT FROM gate) THEN {deferred} END"
        ctes.append(f"jobs AS (SELECT id, row_number() OVER (ORDER BY id) AS ord FROM unnest({deferred}) AS id)")  # noqa: S608
    for n, (row, values) in enumerate(zip(rows, completed, strict=True)):
        columns = _columns(row.table, values)
        select_list = ", ".join("r." + c for c in columns)
        if row.job is not None:
            columns += _columns(row.table, [row.job_column])
            select_list += f", (SELECT id FROM jobs WHERE ord = {int(row.job.index) + 1})"  # noqa: S608
        source = f"SELECT {select_list} FROM {_from_json(row.table, f'w{n}')}{only}"  # noqa: S608
        ctes.append(f"w{n} AS (INSERT INTO {row.table.name} ({', '.join(columns)}) {source})")
    counted = ", (SELECT count(*) FROM jobs) AS queued_jobs" if array else ""
    if guard is not None:  # the guard's row always, and whether the gate wrote
        tail = f"SELECT gate.written, guard.*{counted} FROM guard LEFT JOIN gate ON true"  # noqa: S608
    else:
        tail = f"SELECT gate.written{counted} FROM gate" if gate is not None else f"SELECT 1{counted}"  # noqa: S608
    return "WITH " + ",\n".join(ctes) + "\n" + tail
