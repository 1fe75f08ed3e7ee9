"""Nothing outside ``netfabric/lab/`` may know whether it runs in a lab (issue 13): only the
lab's own command line (``netfabric/cli/labcmd.py``) imports :mod:`netfabric.lab`, and no
other module names the lab's machines."""

from __future__ import annotations

import ast
from pathlib import Path

from netfabric.lab.machine import MACHINE_MARK

PACKAGE = Path(__file__).resolve().parents[2] / "netfabric"
LAB_FRONT_END = PACKAGE / "cli" / "labcmd.py"


def _outside_the_lab() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if PACKAGE / "lab" not in p.parents and p != LAB_FRONT_END]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: resolve against the module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names += [base, *(f"{base}.{a.name}" for a in node.names)]
    return names


def test_only_the_lab_command_line_imports_the_lab() -> None:
    offenders = {str(p.relative_to(PACKAGE.parent)): name for p in _outside_the_lab()
                 for name in _imports(p)
                 if name == "netfabric.lab" or name.startswith("netfabric.lab.")}
    assert not offenders, offenders


def test_no_module_outside_the_lab_names_its_machines() -> None:
    mark = MACHINE_MARK.rstrip(":")
    found = [str(p.relative_to(PACKAGE.parent)) for p in _outside_the_lab()
             if mark in p.read_text()]
    assert not found, found
