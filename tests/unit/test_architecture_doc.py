"""docs/architecture.md stays true: its layout names every module of the package, and no
module that is gone (add a line there when you add a module)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_paths() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    stack: list[tuple[int, str]] = []
    out = set()
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        stack = [(i, n) for i, n in stack if i < indent]
        path = "".join(n for _, n in stack) + name
        if name.endswith("/"):
            stack.append((indent, name))
        elif name.endswith(".py"):
            out.add(path)
    return out


def test_the_layout_lists_every_module_and_no_other() -> None:
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "netfabric").rglob("*.py")
               if p.name != "__init__.py" or p.parent.name == "netfabric"}
    listed = {p for p in _layout_paths() if p.startswith("netfabric/")}
    assert sorted(modules - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - modules) == [], "docs/architecture.md lists modules that are gone"
