"""Which pg_dump/pg_restore `prm backup` uses: one able to dump the server (same major first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prm.backup import BackupError, choose_client


def _c(major: int | None) -> tuple[Path, Path, int | None]:
    return Path(f"/pg{major}/pg_dump"), Path(f"/pg{major}/pg_restore"), major


def test_same_major_first_then_nearest_newer() -> None:
    assert choose_client(18, [_c(15), _c(19), _c(18)]).major == 18
    assert choose_client(18, [_c(20), _c(19), _c(15)]).pg_dump == Path("/pg19/pg_dump")


def test_an_older_client_is_a_clear_error() -> None:
    with pytest.raises(BackupError) as caught:
        choose_client(18, [_c(15), _c(None)])
    message = str(caught.value)
    assert "PostgreSQL 18" in message and "/pg15/pg_dump (15)" in message and "postgresql-client-18" in message
    with pytest.raises(BackupError, match="found: none"):
        choose_client(18, [])
