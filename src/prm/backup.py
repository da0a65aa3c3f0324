"""`prm backup` / `prm restore`: a logical dump of the whole database (pg_dump custom format).

The dump is taken and restored with the client programs of the server's own major version: those
shipped with the embedded server when it is the one in use, else a `pg_dump`/`pg_restore` found on
the machine whose version is at least the server's (pg_dump refuses a newer server). Secrets are not
in the database: a restore into a new data directory also needs the old `SECRET_KEY` (in
development, the `secret_key` file of the old data directory), see docs/operations.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from prm.core import embedded
from prm.core.db import libpq_url, resolve_database_url
from prm.settings import Settings

PROGRAMS = ("pg_dump", "pg_restore")


class BackupError(Exception):
    """Backup or restore could not be done (the message says why, in one line)."""


@dataclass(frozen=True)
class Client:
    pg_dump: Path
    pg_restore: Path
    major: int


def program_major(program: Path) -> int | None:
    """The major version a client program reports (`pg_dump (PostgreSQL) 18.6` → 18)."""
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(match.group(1)) if match else None


def choose_client(server_major: int, candidates: list[tuple[Path, Path, int | None]]) -> Client:
    """The first candidate (pg_dump, pg_restore, major) able to dump this server: same major first,
    then the nearest newer one. Raises BackupError naming what was found."""
    usable = [(d, r, m) for d, r, m in candidates if m is not None and m >= server_major]
    if not usable:
        found = ", ".join(f"{d} ({m or 'unknown version'})" for d, _, m in candidates) or "none"
        raise BackupError(
            f"no pg_dump/pg_restore for PostgreSQL {server_major} (found: {found}); install the PostgreSQL "
            f"{server_major} client programs (e.g. postgresql-client-{server_major}) or put them on PATH"
        )
    dump, restore, major = min(usable, key=lambda c: c[2] - server_major)  # type: ignore[operator]
    return Client(pg_dump=dump, pg_restore=restore, major=int(major))  # type: ignore[arg-type]


def _candidates(settings: Settings, server_major: int) -> list[tuple[Path, Path, int | None]]:
    dirs: list[Path] = []
    if settings.database_url is None:
        dirs.append(embedded.client_program("pg_dump").parent)
    else:
        on_path = shutil.which("pg_dump")
        if on_path:
            dirs.append(Path(on_path).resolve().parent)
        dirs.append(Path(f"/usr/lib/postgresql/{server_major}/bin"))
        dirs.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
        dirs.append(embedded.client_program("pg_dump").parent)  # the embedded package's, when installed
    seen: set[Path] = set()
    found = []
    for d in dirs:
        dump, restore = d / "pg_dump", d / "pg_restore"
        if d in seen or not (dump.exists() and restore.exists()):
            continue
        seen.add(d)
        found.append((dump, restore, program_major(dump)))
    return found


def _server_major(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            num = conn.execute("SHOW server_version_num").fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from None
    assert num is not None
    return int(num[0]) // 10000


def _user_tables(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    return int(row[0]) if row else 0


def _client(settings: Settings) -> tuple[str, Client]:
    url = libpq_url(resolve_database_url(settings))
    major = _server_major(url)
    return url, choose_client(major, _candidates(settings, major))


def _run(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - our own arguments
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")


def backup(settings: Settings, output: Path) -> Path:
    """Dump the whole database to `output` (custom format, compressed); return the path written."""
    url, client = _client(settings)
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        _run([str(client.pg_dump), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}",
              f"--dbname={url}"], "pg_dump")
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def restore(settings: Settings, dump: Path, *, clean: bool = False) -> None:
    """Restore a dump made by `backup`, in one transaction (a failure leaves the database as it was).

    An empty database is filled; a database with tables is refused unless `clean` (its objects
    are then dropped and replaced by those of the dump).
    """
    if not dump.is_file():
        raise BackupError(f"{dump}: no such file")
    url, client = _client(settings)
    _run([str(client.pg_restore), "--list", str(dump)], f"reading {dump.name}")
    tables = _user_tables(url)
    if tables and not clean:
        raise BackupError(
            f"the database is not empty ({tables} tables): restore into a new data directory or database, "
            "or pass --clean to replace its contents"
        )
    args = [str(client.pg_restore), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            f"--dbname={url}"]
    if clean and tables:
        args += ["--clean", "--if-exists"]
    _run([*args, str(dump)], "pg_restore")
