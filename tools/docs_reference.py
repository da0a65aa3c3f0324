"""MkDocs hook: the API reference, rendered at build time from the exported OpenAPI document.

`make docs` runs `prm openapi -o build/openapi.json` first; this hook (listed in `mkdocs.yml`) reads
that file (or `PRM_OPENAPI_FILE`) and adds, without network and without JavaScript:

* `reference/index.md`: how to read the reference, and one line per operation;
* `reference/<tag>.md`: per tag, every operation with its description (scope and errors), parameters,
  request example, response example, and its error examples;
* `reference/schemas.md`: every schema with its fields, types and constraints (what the service refuses);
* `reference/openapi.json`: the document itself, to download or feed a client generator.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
CONSTRAINTS = ("minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
               "exclusiveMaximum", "minItems", "maxItems", "format")


def _document(config: MkDocsConfig) -> dict[str, Any]:
    path = Path(os.environ.get("PRM_OPENAPI_FILE") or Path(config.config_file_path).parent / "build" / "openapi.json")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `prm openapi -o {path}` first (`make docs` does)")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "other"


def _op_anchor(method: str, path: str) -> str:
    return f"{method}-{_slug(path)}"


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def _type(schema: dict[str, Any]) -> str:
    """A short, readable type: `string(uuid)`, `PatientRead`, `array of PhoneIn`, `string | null`."""
    name = _ref_name(schema)
    if name:
        return f"[{name}](schemas.md#{_slug(name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if isinstance(kind, list):
        kind = " | ".join(kind)
    return f"{kind}({schema['format']})" if "format" in schema else str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    parts = [f"{key}: `{schema[key]}`" for key in CONSTRAINTS if key in schema and key != "format"]
    for sub in schema.get("anyOf", []):
        parts += [f"{key}: `{sub[key]}`" for key in CONSTRAINTS if key in sub and key != "format"]
    return ", ".join(parts)


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def _json_block(value: Any) -> str:
    if isinstance(value, str):
        return f"```\n{value}\n```"
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"


def _indented(block: str) -> list[str]:
    return ["    " + line for line in block.split("\n")]


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    out = [f"## {operation.get('summary') or method.upper() + ' ' + path} {{#{_op_anchor(method, path)}}}", "",
           f"`{method.upper()} {path}`", "", operation.get("description", ""), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        out += ["**Parameters**", "", "| name | in | required | type | constraints | example |",
                "|---|---|---|---|---|---|"]
        for p in parameters:
            example = p.get("example", "")
            out.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                       f"{_cell(_type(p.get('schema', {})))} | {_cell(_constraints(p.get('schema', {})))} | "
                       f"{_cell(f'`{example}`' if example != '' else '')} |")
        out.append("")
    for media, spec in operation.get("requestBody", {}).get("content", {}).items():
        out += [f"**Request body** (`{media}`): {_type(spec.get('schema', {}))}", ""]
        examples = spec.get("examples") or ({"example": {"value": spec["example"]}} if "example" in spec else {})
        for example in list(examples.values())[:1]:
            out += [_json_block(example.get("value")), ""]
    for status, response in operation.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        out += [f"**Response {status}**: {response.get('description', '')}", ""]
        for media, spec in response.get("content", {}).items():
            out += [f"`{media}`: {_type(spec.get('schema', {}))}", ""]
            if "example" in spec:
                out += ['??? example "Example"', "", *_indented(_json_block(spec["example"])), ""]
    errors = [(status, example) for status, response in operation.get("responses", {}).items()
              if status[:1] in "45" for example in response.get("content", {}).get("application/problem+json", {})
              .get("examples", {}).values()]
    if errors:
        out += ['??? failure "Error examples"', ""]
        for status, example in errors:
            out += [f"    `{status}` {example.get('summary', '')}", "",
                    *_indented(_json_block(example["value"])), ""]
    return "\n".join(out) + "\n"


def _tag_pages(document: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    pages: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                tag = (item[method].get("tags") or ["other"])[0]
                pages.setdefault(tag, []).append((method, path, item[method]))
    return dict(sorted(pages.items()))


def _index(document: dict[str, Any], pages: dict[str, list[tuple[str, str, dict[str, Any]]]]) -> str:
    info = document.get("info", {})
    count = sum(len(ops) for ops in pages.values())
    out = [f"# API reference ({info.get('title', 'PRM')} {info.get('version', '')})", "",
           f"Rendered from the OpenAPI document of this build: {count} operations. Every operation says "
           "what it does, the scope it needs and its errors; every example on these pages is sent to the "
           "service by the test suite (`tests/integration/test_api_examples.py`), so it works as shown. "
           "Ids in the examples are the demo ids of the example rows.", "",
           "Download the document: [openapi.json](openapi.json) (the running service serves the same at "
           "`/openapi.json`, with Swagger UI at `/docs`). Every error is an RFC 9457 "
           "`application/problem+json` document ([Problem](schemas.md#problem)).", ""]
    for tag, operations in pages.items():
        out += [f"## [{tag}]({_slug(tag)}.md)", "", "| operation | summary | scope |", "|---|---|---|"]
        for method, path, operation in operations:
            scopes = operation.get("x-scopes")
            scope = "public" if scopes is None else (", ".join(f"`{s}`" for s in scopes) or "any credential")
            anchor = _op_anchor(method, path)
            out.append(f"| [`{method.upper()} {path}`]({_slug(tag)}.md#{anchor}) | "
                       f"{_cell(operation.get('summary'))} | {scope} |")
        out.append("")
    return "\n".join(out)


def _schemas(document: dict[str, Any]) -> str:
    out = ["# Schemas", "", "Request and response bodies. The constraints are the ones the service enforces: a "
           "client validating against them is refused nothing the schema allows.", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        out += [f"## {name} {{#{_slug(name)}}}", "", _cell(schema.get("description", "")), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            out += ["| field | type | required | constraints | description |", "|---|---|---|---|---|"]
            for field, sub in properties.items():
                out.append(f"| `{field}` | {_cell(_type(sub))} | {'yes' if field in required else 'no'} | "
                           f"{_cell(_constraints(sub))} | {_cell(sub.get('description', ''))} |")
            out.append("")
        elif "enum" in schema:
            out += [f"One of {_type(schema)}.", ""]
    return "\n".join(out)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    document = _document(config)
    pages = _tag_pages(document)
    generated = {"reference/index.md": _index(document, pages), "reference/schemas.md": _schemas(document),
                 "reference/openapi.json": json.dumps(document, indent=2, ensure_ascii=False)}
    for tag, operations in pages.items():
        generated[f"reference/{_slug(tag)}.md"] = f"# {tag}\n\n" + "\n".join(_operation(*op) for op in operations)
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_listed(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_listed(v) for v in nav)) if nav else set()
    return set()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Put one page per tag under the nav's "API reference" section, and every page of `docs/` the nav
    does not list (a new domain's page) under "Domains", so adding a page needs no edit here."""
    pages = _tag_pages(_document(config))
    listed = _listed(config.nav)
    unlisted = sorted(p.name for p in Path(config.docs_dir).glob("*.md") if p.name not in listed)
    for entry in config.nav or []:
        if isinstance(entry, dict) and "Domains" in entry:
            entry["Domains"] = [*entry["Domains"], *unlisted]
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = ["reference/index.md", *({tag: f"reference/{_slug(tag)}.md"} for tag in pages),
                                      {"Schemas": "reference/schemas.md"}]
    return config
