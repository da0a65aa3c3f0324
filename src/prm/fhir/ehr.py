"""Talking to an EHR's FHIR endpoint: one adapter per server family.

* `transaction` (HAPI, Medplum, Azure, Epic/Cerner sandboxes...): the chart goes as one
  `transaction` Bundle, all or nothing; conditional creates (`ifNoneExist`) and updates by id.
* `per_resource` (OpenEMR and others that write only some types, without transactions): each entry
  as its own request, in order (`If-None-Exist` header for a conditional create), references to
  earlier entries rewritten to the ids the server gave them; types the server does not create or
  update (read from its CapabilityStatement) are skipped and reported, and references to them become
  display-only.

Both return one `EntryResult` per entry of the bundle, in order. Failures raise `EhrError`;
`transient` says whether a retry may help (timeouts, 408, 429, 5xx), `retry_after` honours the
server's `Retry-After`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from prm.core import clock

FHIR_JSON = "application/fhir+json"
PER_RESOURCE_WRITABLE = frozenset({"Patient", "Practitioner", "Organization", "Location", "Appointment",
                                   "Condition", "AllergyIntolerance", "MedicationStatement", "Observation",
                                   "DocumentReference", "QuestionnaireResponse"})


class EhrError(Exception):
    def __init__(self, message: str, *, status: int | None = None, transient: bool,
                 retry_after: float | None = None, unauthorized: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.unauthorized = unauthorized


@dataclass(frozen=True)
class EntryResult:
    status: int  # HTTP status of the entry; 0 when skipped
    ehr_id: str | None
    version: str | None
    skipped: str | None = None  # why, when the server family does not write this type


def parse_location(location: str | None) -> tuple[str | None, str | None]:
    """(id, version) of `Type/id/_history/version` (absolute URLs too)."""
    if not location:
        return None, None
    parts = location.rstrip("/").split("/")
    if "_history" in parts:
        i = parts.index("_history")
        return (parts[i - 1] if i >= 1 else None), (parts[i + 1] if i + 1 < len(parts) else None)
    return parts[-1], None


def _etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"') or None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - clock.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in body.get("issue") or [])[:500]
    return json.dumps(body)[:200]


def _check(response: httpx.Response) -> None:
    if 200 <= response.status_code < 300:
        return
    status = response.status_code
    raise EhrError(f"EHR answered {status}: {_diagnostics(response)}", status=status,
                   transient=status in (408, 429) or status >= 500,
                   retry_after=_retry_after(response.headers.get("retry-after")), unauthorized=status == 401)


def _status_code(status_line: str) -> int:
    try:
        return int(status_line.split()[0])
    except (ValueError, IndexError):
        return 0


async def _call(request: Awaitable[httpx.Response]) -> httpx.Response:
    try:
        response = await request
    except httpx.TimeoutException:
        raise EhrError("EHR timed out", transient=True) from None
    except httpx.HTTPError as exc:
        raise EhrError(f"EHR unreachable: {type(exc).__name__}", transient=True) from None
    return response


async def send_transaction(http: httpx.AsyncClient, base_url: str, bundle: dict[str, Any],
                           headers: dict[str, str]) -> list[EntryResult]:
    response = await _call(http.post(base_url.rstrip("/"), json=bundle,
                                     headers={**headers, "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}))
    _check(response)
    try:
        body = response.json()
        entries = body["entry"]
        assert body.get("resourceType") == "Bundle" and body.get("type") == "transaction-response"
        assert len(entries) == len(bundle["entry"])
    except (ValueError, KeyError, TypeError, AssertionError):
        raise EhrError("EHR answered the transaction without a matching transaction-response", transient=False,
                       status=response.status_code) from None
    results = []
    for entry in entries:
        outcome = entry.get("response") or {}
        ehr_id, version = parse_location(outcome.get("location"))
        results.append(EntryResult(_status_code(str(outcome.get("status", ""))), ehr_id,
                                   version or _etag_version(outcome.get("etag"))))
    return results


def _rewrite(node: Any, resolved: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (resolved.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, resolved))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, resolved) for v in node]
    return node


def _drop_unresolved(node: Any) -> Any:
    """A reference to an entry the server did not take (a type it does not write) cannot be sent:
    it becomes a display-only Reference, which FHIR allows."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:"):
            return {"display": node.get("display") or "not recorded on this server"}
        return {k: _drop_unresolved(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_unresolved(v) for v in node]
    return node


async def writable_types(http: httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> frozenset[str]:
    """The types the server says it creates or updates (its CapabilityStatement); the usual set when it
    does not say."""
    try:
        response = await http.get(f"{base_url.rstrip('/')}/metadata", headers={**headers, "Accept": FHIR_JSON})
        rest = response.json()["rest"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        rest = None
    if not rest:
        return PER_RESOURCE_WRITABLE
    found = {r.get("type") for block in rest if isinstance(block, dict) for r in block.get("resource") or []
             if isinstance(r, dict) and {i.get("code") for i in r.get("interaction") or [] if isinstance(i, dict)}
             & {"create", "update"}}
    return frozenset(t for t in found if isinstance(t, str))


async def send_per_resource(http: httpx.AsyncClient, base_url: str, bundle: dict[str, Any],
                            headers: dict[str, str]) -> list[EntryResult]:
    base = base_url.rstrip("/")
    writable = await writable_types(http, base, headers)
    resolved: dict[str, str] = {}  # urn:uuid:... -> Type/ehr-id
    results: list[EntryResult] = []
    for entry in bundle["entry"]:
        resource = _drop_unresolved(_rewrite(copy.deepcopy(entry["resource"]), resolved))
        rtype = resource["resourceType"]
        request = entry["request"]
        if rtype not in writable:
            results.append(EntryResult(0, None, None, skipped=f"{rtype} is not writable on this server"))
            continue
        extra = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if request["method"] == "POST":
            if request.get("ifNoneExist"):
                extra["If-None-Exist"] = request["ifNoneExist"]
            response = await _call(http.post(f"{base}/{rtype}", json=resource, headers={**headers, **extra}))
        else:
            response = await _call(http.put(f"{base}/{request['url']}", json=resource, headers={**headers, **extra}))
        _check(response)
        ehr_id, version = parse_location(response.headers.get("location") or response.headers.get(
            "content-location"))
        if ehr_id is None:
            try:
                ehr_id = str(response.json().get("id") or "") or None
            except ValueError:
                ehr_id = None
        version = version or _etag_version(response.headers.get("etag"))
        if ehr_id and entry.get("fullUrl"):
            resolved[entry["fullUrl"]] = f"{rtype}/{ehr_id}"
        results.append(EntryResult(response.status_code, ehr_id, version))
    return results


ADAPTERS = {"transaction": send_transaction, "per_resource": send_per_resource}
