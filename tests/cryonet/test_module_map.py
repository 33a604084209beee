"""docs/developer/cryonet-map.md names every cryonet module (so the map cannot go stale)."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import cryonet

MAP = Path(__file__).resolve().parents[2] / "docs" / "developer" / "cryonet-map.md"


def test_map_lists_every_module() -> None:
    text = MAP.read_text(encoding="utf-8")
    names = [
        m.name.removeprefix("cryonet.")
        for m in pkgutil.walk_packages(cryonet.__path__, "cryonet.")
        if not m.name.startswith("cryonet.cli.")  # one thin command per function: `cli/`
    ]
    spelled = {n: (f"`{n.replace('.', '/')}`", f"`{n}/`", f"`{n.split('.')[-1]}`") for n in names}
    missing = [n for n, forms in spelled.items() if not any(f in text for f in forms)]
    assert not missing, f"modules missing from {MAP.name}: {missing}"


def test_no_module_imports_another_modules_private_names() -> None:
    """What split modules share is public (the map's rule); ``_plot``/``_version`` are modules."""
    import ast

    root = Path(cryonet.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cryonet"):
                private = [a.name for a in node.names if a.name[:1] == "_" and a.name[:2] != "__"]
                found += [
                    f"{path.relative_to(root)}:{node.lineno} {node.module}.{n}" for n in private
                ]
    assert not found, f"private names imported across modules: {found}"
