"""The n8n workflow in docs/integrations.md is importable JSON wired the way the service expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "integrations.md"


def test_n8n_workflow_in_the_docs_is_valid_and_authenticated() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    workflow = json.loads(next(b for b in blocks if '"nodes"' in b))
    nodes = {n["name"]: n for n in workflow["nodes"]}
    trigger = nodes["PRM trigger"]
    assert trigger["type"] == "n8n-nodes-base.webhook" and trigger["parameters"]["authentication"] == "jwtAuth"
    assert trigger["parameters"]["responseCode"] == 202
    callback = nodes["Call back PRM"]["parameters"]
    assert "callback.url" in callback["url"] and "callback.token" in json.dumps(callback["headerParameters"])
    for source, targets in workflow["connections"].items():
        assert source in nodes and all(t["node"] in nodes for t in targets["main"][0])
