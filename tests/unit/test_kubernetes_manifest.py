"""deploy/kubernetes.yml (issue 19, scale-out) is checked like the compose file: every command is one
the CLI accepts, every variable one the service reads, API and worker deployments with probes on
/health and /ready, and the migrations as a Job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_deploy_files import SETTINGS, assert_cli_accepts

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes.yml"


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def _container(document: dict[str, Any]) -> dict[str, Any]:
    [container] = document["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_api_and_worker_deployments_and_a_migration_job() -> None:
    docs = _documents()
    api, worker = docs[("Deployment", "prm-api")], docs[("Deployment", "prm-worker")]
    migrate = docs[("Job", "prm-migrate")]
    assert api["spec"]["replicas"] >= 2 and worker["spec"]["replicas"] >= 2
    assert _container(migrate)["command"] == ["prm", "migrate"]
    assert _container(worker)["command"] == ["prm", "worker"]
    api_command = _container(api)["command"]
    assert api_command[:2] == ["prm", "serve"] and "--no-worker" in api_command and "--no-migrate" in api_command
    for document in (api, worker, migrate):
        assert_cli_accepts(_container(document)["command"])
        assert document["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    probes = _container(api)
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    service = docs[("Service", "prm-api")]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_every_variable_is_a_setting_and_the_api_runs_no_worker() -> None:
    config = _documents()[("ConfigMap", "prm")]["data"]
    unknown = set(config) - SETTINGS
    assert unknown == set(), f"kubernetes.yml sets variables the service does not read: {unknown}"
    assert config["RUN_WORKER"] == "false" and config["ENVIRONMENT"] == "production"
    assert all(isinstance(value, str) for value in config.values())  # ConfigMap values are strings
