"""A custom import-linter contract: domains reach each other only through their published interface.

A *domain* is any direct subpackage of `root` (e.g. `prm.patients`) that is not listed in `shared`
(`core`, `adapters`: infrastructure every domain may use). A module of one domain may import, of
another domain, only the modules named in `published` (by default `service` and `schemas`) —
never its `models`, `router`, `tasks`, `subscribers` or capability modules. Exceptions are listed
in `ignore_imports` like any import-linter contract. New domains need no configuration.
"""

from __future__ import annotations

from typing import Any

import grimp
from importlinter import Contract, ContractCheck, fields, output
from importlinter.application import contract_utils


class DomainBoundariesContract(Contract):
    type_name = "domain_boundaries"

    root = fields.StringField()
    shared = fields.ListField(subfield=fields.StringField(), required=False)
    published = fields.ListField(subfield=fields.StringField(), required=False)
    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)
    unmatched_ignore_imports_alerting = fields.EnumField(
        contract_utils.AlertLevel, default=contract_utils.AlertLevel.ERROR
    )

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        removal = contract_utils.remove_ignored_imports_and_report(
            graph=graph,
            ignore_imports=self.ignore_imports,  # type: ignore[arg-type]
            unmatched_alerting=self.unmatched_ignore_imports_alerting,  # type: ignore[arg-type]
        )
        root = str(self.root)
        shared = set(self.shared or [])  # type: ignore[arg-type]
        published = set(self.published or ["service", "schemas"])  # type: ignore[arg-type]

        def domain_of(module: str) -> str | None:
            parts = module.split(".")
            if len(parts) < 2 or parts[0] != root or parts[1] in shared:
                return None
            package = f"{root}.{parts[1]}"
            return parts[1] if graph.find_children(package) else None  # a package, not prm.app

        illegal: list[dict[str, Any]] = []
        for importer in sorted(graph.modules):
            source = domain_of(importer)
            if source is None:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                target = domain_of(imported)
                if target is None or target == source:
                    continue
                parts = imported.split(".")
                if len(parts) >= 3 and parts[2] in published:
                    continue
                lines = [d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)]
                illegal.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(
            kept=not illegal,
            warnings=list(removal.warnings),
            ignored_import_count=removal.ignored_import_count,
            metadata={"illegal": illegal},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("Imports of another domain's internals (use its service or schemas):", bold=False)
        output.new_line()
        for link in check.metadata["illegal"]:
            where = ", ".join(map(str, link["lines"]))
            output.print_error(f"- {link['importer']} -> {link['imported']} (l.{where})", bold=False)
        output.new_line()
