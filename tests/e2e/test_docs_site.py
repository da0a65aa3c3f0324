"""`make docs`: the site builds in strict mode (a broken link or anchor fails) with the API reference
rendered from the exported OpenAPI document, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from prm.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_documentation_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    document = tmp_path / "openapi.json"
    result = CliRunner().invoke(cli, ["openapi", "--output", str(document)])
    assert result.exit_code == 0, result.output
    operations = [(m, p) for p, item in json.loads(document.read_text())["paths"].items() for m in item]
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
        env={**os.environ, "PRM_OPENAPI_FILE": str(document), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    index = (site / "reference" / "index.html").read_text()
    assert f"{len(operations)} operations" in index
    patients = (site / "reference" / "patients" / "index.html").read_text()
    assert "POST /patients" in patients and "patients:write" in patients and "García López" in patients
    assert (site / "quickstart" / "index.html").exists()
    home = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in home and 'src="https://' not in home  # readable offline too
    assert json.loads((site / "reference" / "openapi.json").read_text())["paths"]


def test_openapi_export_needs_no_database_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["openapi"], env={"PRM_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["openapi"].startswith("3.")
    assert not (tmp_path / "data").exists()
