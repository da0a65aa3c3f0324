"""Bundles: the `searchset` a search answers with (paging links included) and the `transaction`
a sync sends. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from prm.fhir import mapping


def _link(base: str, resource_type: str, params: Sequence[tuple[str, str]], count: int, offset: int) -> str:
    kept = [(k, v) for k, v in params if k not in ("_count", "_offset")]
    return f"{base}/{resource_type}?" + urlencode([*kept, ("_count", str(count)), ("_offset", str(offset))])


def searchset(*, base: str, resource_type: str, resources: Sequence[dict[str, Any]], total: int,
              params: Sequence[tuple[str, str]], count: int, offset: int, at: datetime,
              outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `searchset` Bundle for one page: `self`, `first`, `previous`/`next` when they exist, `last`.

    `params` are the search parameters actually used (ignored ones are left out of the links, as
    FHIR's lenient handling asks)."""
    links = [{"relation": "self", "url": _link(base, resource_type, params, count, offset)},
             {"relation": "first", "url": _link(base, resource_type, params, count, 0)}]
    if count > 0 and offset > 0:
        links.append({"relation": "previous", "url": _link(base, resource_type, params, count,
                                                            max(0, offset - count))})
    if count > 0 and offset + count < total:
        links.append({"relation": "next", "url": _link(base, resource_type, params, count, offset + count)})
    if count > 0 and total > 0:
        links.append({"relation": "last", "url": _link(base, resource_type, params, count,
                                                        ((total - 1) // count) * count)})
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return mapping.validated({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": at.isoformat(),
        "total": total,
        "link": links,
        "entry": entries or None,
    } if entries else {
        "resourceType": "Bundle", "type": "searchset", "timestamp": at.isoformat(), "total": total, "link": links,
    })


# --- the transaction a sync sends ------------------------------------------------------------------


@dataclass(frozen=True)
class ChartEntry:
    """One of our records as a resource, with the id it has here (a UUID string)."""

    resource_type: str
    local_id: str
    resource: dict[str, Any]
    patient_id: str | None = None


@dataclass(frozen=True)
class Known:
    """What the link table knows of a record on the EHR."""

    ehr_id: str
    content_sha256: str | None


def digest(resource: dict[str, Any]) -> str:
    """The content of a resource as we send it, without `meta` (the EHR keeps its own)."""
    content = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _rewrite(node: Any, refs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, refs) for v in node]
    return node


def transaction(entries: Sequence[ChartEntry], known: dict[tuple[str, str], Known], *,
                force: frozenset[tuple[str, str]] = frozenset()) -> tuple[dict[str, Any] | None, list[ChartEntry]]:
    """The `transaction` Bundle for `entries`, and the entries it carries (in its order).

    A record the EHR already has unchanged (same digest in `known`) is left out and referenced by its
    EHR id; a known one that changed (or is in `force`) is a PUT by EHR id; an unknown one is a
    conditional create, `POST` with `ifNoneExist: identifier=urn:prm:<kind>|<id>`, so that sending it
    twice (a retry after a lost answer) cannot create it twice. Entries reference each other by their
    `urn:uuid:<our id>` full URLs. None when nothing needs sending.
    """
    refs: dict[str, str] = {}
    carried: list[ChartEntry] = []
    for e in entries:
        key = (e.resource_type, e.local_id)
        link = known.get(key)
        if link is not None and key not in force and link.content_sha256 == digest(e.resource):
            refs[f"{e.resource_type}/{e.local_id}"] = f"{e.resource_type}/{link.ehr_id}"
        else:
            refs[f"{e.resource_type}/{e.local_id}"] = f"urn:uuid:{e.local_id}"
            carried.append(e)
    if not carried:
        return None, []
    bundle_entries = []
    for e in carried:
        link = known.get((e.resource_type, e.local_id))
        body = _rewrite({k: v for k, v in e.resource.items() if k not in ("id", "meta")}, refs)
        if link is not None:
            body = {"resourceType": e.resource_type, "id": link.ehr_id,
                    **{k: v for k, v in body.items() if k != "resourceType"}}
            request = {"method": "PUT", "url": f"{e.resource_type}/{link.ehr_id}"}
        else:
            request = {"method": "POST", "url": e.resource_type,
                       "ifNoneExist": "identifier=" + quote(mapping.token(e.resource_type, e.local_id), safe=":|")}
        bundle_entries.append({"fullUrl": f"urn:uuid:{e.local_id}", "resource": body, "request": request})
    return mapping.validated({"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries}), carried
