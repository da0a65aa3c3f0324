"""The layering contract (import-linter, `[tool.importlinter]` in pyproject.toml) holds, and it fails
on a forbidden import: a lower layer importing a higher one, or a domain importing another's models."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with this repository's contracts on the package tree under `src`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{src}:{ROOT}", "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def copy_of_src(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "prm", tmp_path / "prm", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_code_keeps_the_contracts(copy_of_src: Path) -> None:
    result = _lint(copy_of_src)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(copy_of_src: Path) -> None:
    bad = copy_of_src / "prm" / "patients" / "layering_violation.py"
    bad.write_text("from prm.appointments import service  # patients must not know appointments\n")
    result = _lint(copy_of_src)
    assert result.returncode != 0
    assert "prm.patients is not allowed to import prm.appointments" in result.stdout


def test_importing_another_domains_models_breaks_the_domain_boundaries(copy_of_src: Path) -> None:
    bad = copy_of_src / "prm" / "notifications" / "boundary_violation.py"
    bad.write_text("from prm.communications.models import ChannelConfig  # only through its service\n")
    result = _lint(copy_of_src)
    assert result.returncode != 0
    assert "prm.notifications.boundary_violation -> prm.communications.models" in result.stdout
