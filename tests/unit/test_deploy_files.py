"""There is no Docker engine here, so the deployment files are checked by reading them: every
command they run must exist in the `prm` CLI with the options given, every variable they set must be
a setting, and every file they copy must exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import yaml
from typer.main import get_command

from prm.cli import cli
from prm.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}


def assert_cli_accepts(argv: list[str]) -> None:
    assert argv[0] == "prm", argv
    command: click.Command = get_command(cli)
    args = argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{argv}: missing subcommand"
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"{argv}: no such command {args[0]!r}"
        command, args = sub, args[1:]
    # Let click parse the arguments for real (without running the command).
    ctx = command.make_context("prm", list(args), resilient_parsing=False)
    assert ctx is not None


def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    instructions = _dockerfile()
    assert instructions[0][0] == "FROM" and re.match(r"python:3\.1[1-9]-slim", instructions[0][1])
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1] not in {"root", "0"}
    health = [rest for kw, rest in instructions if kw == "HEALTHCHECK"]
    assert health and "/health" in health[0]
    for kw, rest in instructions:
        if kw == "COPY":
            sources = shlex.split(rest)[:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} missing"
    cmd = [rest for kw, rest in instructions if kw == "CMD"][-1]
    assert_cli_accepts(yaml.safe_load(cmd))
    for kw, rest in instructions:
        if kw == "ENV":
            for name in re.findall(r"([A-Z_]+)=", rest):
                if not name.startswith(("PYTHON", "PIP_")):
                    assert name in SETTINGS, f"Dockerfile sets unknown setting {name}"


def test_compose_services_commands_and_variables() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker", "postgres", "redis", "migrate"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    for name in ("api", "worker", "migrate"):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        assert_cli_accepts(service["command"])
        for variable in service["environment"]:
            assert variable in SETTINGS, f"{name} sets {variable}, which the service does not read"
        for dependency in service.get("depends_on", {}):
            assert dependency in services
    assert services["api"]["environment"]["RUN_WORKER"] == "false"


def test_ci_entry_point_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^run:", makefile, re.M)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test-deploy.yml").read_text())
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert "make test" in steps and "make lint" in steps
