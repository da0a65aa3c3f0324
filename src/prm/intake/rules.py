"""Intake rules without I/O: record validation, questionnaire definitions, answers and completeness.

* A record's `data` is validated by its type's model (`schemas.RECORD_MODELS`) and stored in the
  model's JSON form (dates as ISO text, defaults filled in).
* A questionnaire definition is FHIR Questionnaire items: `linkId` unique across the tree,
  `choice` items carry `answerOption`s, `group`/`display` items take no answer.
* An answer names a `linkId` of the session's version; its value must fit the item's type (and
  its options for `choice`); a list only where the item `repeats`.
* Completeness: every `required` answerable item has an answer (items nested in a group count
  when the group is itself required or has at least one answer — the FHIR reading).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from prm.intake.schemas import RECORD_MODELS, QuestionnaireItem

ANSWERABLE = frozenset({"boolean", "decimal", "integer", "date", "dateTime", "string", "text", "choice",
                        "open-choice"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with the dotted field it is about."""

    field: str
    message: str


def record_data(record_type: str, data: dict[str, Any], *, prefix: str = "data"
                ) -> tuple[dict[str, Any], list[Problem]]:
    """`data` validated for `record_type`, in its stored JSON form; or the problems naming each field."""
    model = RECORD_MODELS[record_type]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems = [Problem(".".join([prefix, *(str(p) for p in e["loc"])]), e["msg"]) for e in exc.errors()]
        return {}, problems
    return parsed.model_dump(mode="json", exclude_none=True), []


# --- questionnaire definitions -----------------------------------------------------------------


def walk(items: Iterable[dict[str, Any]], path: str = "item") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every item of a stored definition with its dotted path, depth first."""
    for i, item in enumerate(items):
        here = f"{path}.{i}"
        yield here, item
        yield from walk(item.get("item") or [], f"{here}.item")


def definition_problems(items: list[QuestionnaireItem]) -> list[Problem]:
    """What is wrong with a definition about to be published (empty: publishable)."""
    stored = [i.model_dump(by_alias=True, exclude_defaults=False) for i in items]
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path, item in walk(stored):
        link_id = item["linkId"]
        if link_id in seen:
            problems.append(Problem(f"{path}.linkId", f"{link_id!r} is already used by {seen[link_id]}"))
        seen.setdefault(link_id, path)
        kind = item["type"]
        if kind in ("choice",) and not item.get("answerOption"):
            problems.append(Problem(f"{path}.answerOption", "a choice item needs its options"))
        if kind not in ("choice", "open-choice") and item.get("answerOption"):
            problems.append(Problem(f"{path}.answerOption", f"only choice items take options (not {kind})"))
        if kind == "group" and not item.get("item"):
            problems.append(Problem(f"{path}.item", "a group needs items"))
        if kind != "group" and item.get("item"):
            problems.append(Problem(f"{path}.item", "only groups have nested items here"))
        if kind == "display" and item.get("required"):
            problems.append(Problem(f"{path}.required", "a display item takes no answer"))
        for j, option in enumerate(item.get("answerOption") or []):
            if sum(v is not None for v in option.values()) != 1:
                problems.append(Problem(f"{path}.answerOption.{j}", "exactly one of valueCoding, valueString, "
                                        "valueInteger"))
    return problems


def stored_items(items: list[QuestionnaireItem]) -> list[dict[str, Any]]:
    """The definition as stored and served: FHIR names, no empty lists or nulls."""
    def clean(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if v not in (None, [], False) or k in ("required",)}
        if not out.get("required"):
            out.pop("required", None)
        if out.get("answerOption"):
            out["answerOption"] = [{k: v for k, v in o.items() if v is not None} for o in out["answerOption"]]
        if out.get("item"):
            out["item"] = [clean(i) for i in out["item"]]
        return out
    return [clean(i.model_dump(by_alias=True)) for i in items]


def fhir_questionnaire(*, key: str, title: str, description: str, version: int, items: list[dict[str, Any]],
                       url_base: str = "https://prm.dev/fhir/Questionnaire") -> dict[str, Any]:
    """A FHIR R4 Questionnaire resource for a stored version."""
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "url": f"{url_base}/{key}",
        "version": str(version),
        "name": key.replace("-", "_").replace(".", "_"),
        "title": title,
        "status": "active",
        "item": items,
    }
    if description:
        resource["description"] = description
    return resource


# --- answers -----------------------------------------------------------------------------------


def items_by_link_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["linkId"]: item for _, item in walk(items)}


def _option_values(item: dict[str, Any]) -> list[Any]:
    values: list[Any] = []
    for option in item.get("answerOption") or []:
        if "valueCoding" in option:
            values.append(option["valueCoding"].get("code"))
        values.extend(option[k] for k in ("valueString", "valueInteger") if k in option)
    return values


def _one_value_problem(item: dict[str, Any], value: Any) -> str | None:
    kind = item["type"]
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if kind == "decimal":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "must be a number"
    if kind in ("string", "text", "open-choice"):
        if not isinstance(value, str) or not value.strip():
            return "must be text"
        if kind == "open-choice" or len(value) <= 10000:
            return None
        return "is too long"
    if kind == "date":
        try:
            date.fromisoformat(str(value))
        except ValueError:
            return "must be a date (YYYY-MM-DD)"
        return None if isinstance(value, str) else "must be a date (YYYY-MM-DD)"
    if kind == "dateTime":
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            return "must be a date and time with its offset"
        return None if isinstance(value, str) and parsed.tzinfo is not None else \
            "must be a date and time with its offset"
    if kind == "choice":
        options = _option_values(item)
        return None if value in options else "must be one of the item's options"
    return f"a {kind} item takes no answer"


def answer_problems(items: list[dict[str, Any]], link_id: str, value: Any, *, prefix: str = "data") -> list[Problem]:
    """Problems of one answer against the version's items (empty: valid)."""
    item = items_by_link_id(items).get(link_id)
    if item is None:
        return [Problem(f"{prefix}.link_id", "no such item in the session's questionnaire version")]
    if item["type"] not in ANSWERABLE:
        return [Problem(f"{prefix}.link_id", f"a {item['type']} item takes no answer")]
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list):
        if not item.get("repeats"):
            return [Problem(f"{prefix}.value", "this item takes one answer, not a list")]
        if not value:
            return [Problem(f"{prefix}.value", "must not be empty")]
    problems = []
    for i, one in enumerate(values):
        message = _one_value_problem(item, one)
        if message:
            field = f"{prefix}.value.{i}" if isinstance(value, list) else f"{prefix}.value"
            problems.append(Problem(field, message))
    return problems


def missing_required(items: list[dict[str, Any]], answered: set[str]) -> list[str]:
    """linkIds of required items without an answer, in definition order."""
    missing: list[str] = []

    def answered_below(item: dict[str, Any]) -> bool:
        return any(sub["linkId"] in answered or answered_below(sub) for sub in item.get("item") or [])

    def visit(level: list[dict[str, Any]]) -> None:
        for item in level:
            if item["type"] == "group":
                if item.get("required") or answered_below(item):
                    visit(item.get("item") or [])
                continue
            if item.get("required") and item["type"] in ANSWERABLE and item["linkId"] not in answered:
                missing.append(item["linkId"])

    visit(items)
    return missing


def etag(version: int) -> str:
    return f'"{version}"'
