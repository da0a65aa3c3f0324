"""The lock files pin every dependency of pyproject.toml, with hashes: a dependency added (or its range
changed) without re-locking fails here, with the command that fixes it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `make lock` (and commit requirements.lock and requirements-dev.lock)"


def _project() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def parse_lock(text: str) -> dict[str, tuple[Version, int]]:
    """`name==version` entries of a pip/uv lock file → {canonical name: (version, number of hashes)}."""
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.replace("\\\n", " ")):
        line = block.split("\n", 1)[0].split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = (Version(match.group(2)), line.count("--hash=sha256:"))
    return pins


def missing_or_stale(requirements: list[str], pins: dict[str, tuple[Version, int]]) -> list[str]:
    """What the lock does not satisfy: unpinned packages, pins outside the range, pins without hashes."""
    problems = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11", "sys_platform": "linux",
                                                                "platform_system": "Linux", "extra": ""}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not in the lock")
        elif req.specifier and not req.specifier.contains(pinned[0], prereleases=True):
            problems.append(f"{req.name}: locked {pinned[0]} is outside {req.specifier}")
        elif pinned[1] == 0:
            problems.append(f"{req.name}: locked without a hash")
    return problems


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("requirements.lock", []), ("requirements-dev.lock", ["dev"])],
)
def test_every_dependency_is_locked_with_hashes(lock: str, extras: list[str]) -> None:
    path = ROOT / lock
    assert path.exists(), f"{lock} is missing: {FIX}"
    project = _project()
    wanted = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    pins = parse_lock(path.read_text())
    problems = missing_or_stale(wanted, pins)
    assert problems == [], f"{lock} does not match pyproject.toml ({'; '.join(problems)}): {FIX}"
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert unhashed == [], f"{lock} has pins without hashes ({', '.join(unhashed)}): {FIX}"


def test_the_check_notices_a_new_or_changed_dependency() -> None:
    pins = parse_lock("fastapi==0.115.2 \\\n    --hash=sha256:ab\nrespx==0.22.0\n")
    assert missing_or_stale(["fastapi>=0.115,<1"], pins) == []
    assert missing_or_stale(["fastapi>=0.116"], pins) == ["fastapi: locked 0.115.2 is outside >=0.116"]
    assert missing_or_stale(["brand-new-lib>=1"], pins) == ["brand-new-lib: not in the lock"]
    assert missing_or_stale(["respx"], pins) == ["respx: locked without a hash"]
    assert missing_or_stale(["Fast_API>=0.1; python_version < '3.0'"], pins) == []  # not for this Python


def test_installs_go_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "--no-deps -e ." in makefile and "\nlock:" in makefile
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile and "--no-deps ." in dockerfile
    workflow = (ROOT / ".github" / "workflows" / "test-deploy.yml").read_text()
    assert "pip-audit" in workflow
