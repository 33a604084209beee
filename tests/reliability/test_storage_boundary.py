"""Only the storage layer deletes, moves or copies files and folders (issue 17).

Every removal, atomic rename and copy in both packages goes through ``glacierstack.storage``,
which checks what it removes (a store of the expected kind, a folder inside the workflow's own
output, a file of ours). This test reads the source of every module with ``ast`` and fails on
a file-system mutation anywhere else, naming file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("glacierstack", "cryonet")
STORAGE = ("glacierstack/storage/",)
"""The storage layer: the only place allowed to mutate the file system this way."""
OS_CALLS = {"remove", "unlink", "rmdir", "removedirs", "replace", "rename", "renames"}
METHODS = {"unlink", "rmdir", "rmtree"}
OS_PATH_PURE = {"relpath"}
"""``os.path`` functions that only compute strings (no file-system access)."""


def _violations(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=rel)
    found = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import shutil" for a in node.names if a.name == "shutil"]
        elif isinstance(node, ast.ImportFrom) and node.module == "shutil":
            found.append(f"{where} from shutil import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in OS_CALLS:
                found.append(f"{where} os.{node.attr}")
            if node.value.id == "shutil":
                found.append(f"{where} shutil.{node.attr}")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and (node.value.value.id, node.value.attr) == ("os", "path")
            and node.attr not in OS_PATH_PURE
        ):
            found.append(f"{where} os.path.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in METHODS:
                found.append(f"{where} .{name}()")
            # Path.replace(target) takes one argument; str.replace takes two or three
            if name == "replace" and len(node.args) == 1 and not node.keywords:
                found.append(f"{where} .replace(target) (Path.replace)")
    return found


def _modules() -> list[tuple[Path, str]]:
    out = []
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            rel = f.relative_to(REPO).as_posix()
            if not rel.startswith(STORAGE):
                out.append((f, rel))
    return out


def test_no_file_mutation_outside_the_storage_layer():
    found = [v for f, rel in _modules() for v in _violations(f, rel)]
    assert not found, "route these through glacierstack.storage:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "import shutil\nshutil.rmtree(p)",
        "import os\nos.replace(a, b)",
        "from pathlib import Path\nPath(p).unlink(missing_ok=True)",
        "tmp.replace(path)",
        "import os\nos.path.exists(p)",
    ],
)
def test_the_check_catches_each_kind(tmp_path, code):
    f = tmp_path / "mod.py"
    f.write_text(code)
    assert _violations(f, "mod.py")


def test_the_check_leaves_string_replace_alone(tmp_path):
    f = tmp_path / "mod.py"
    f.write_text('s = "a-b".replace("-", "_")\nimport os\nr = os.path.relpath("a", "b")\n')
    assert _violations(f, "mod.py") == []


def test_remove_owned_only_inside_a_marked_output_folder(tmp_path):
    from glacierstack.storage import ForeignStoreError, remove_owned

    out = tmp_path / "demo"
    (out / "train").mkdir(parents=True)
    (out / "train" / "best.pt").write_bytes(b"x")
    with pytest.raises(ForeignStoreError, match="has no .demo"):
        remove_owned(out / "train", root=out, marker=".demo")  # not the demo's folder
    assert (out / "train" / "best.pt").exists()
    (out / ".demo").mkdir()
    with pytest.raises(ForeignStoreError, match="not inside"):
        remove_owned(tmp_path, root=out, marker=".demo")
    with pytest.raises(ForeignStoreError, match="not inside"):
        remove_owned(out, root=out, marker=".demo")
    remove_owned(out / "train", root=out, marker=".demo")
    assert not (out / "train").exists() and (out / ".demo").is_dir()


def test_demo_clear_keeps_a_foreign_folder_where_its_cube_goes(tmp_path):
    from cryonet.demo import _clear
    from glacierstack.storage import ForeignStoreError

    user = tmp_path / "out" / "cubes" / "poiqu.zarr"
    user.mkdir(parents=True)
    (user / "mine.txt").write_text("not a cube")
    with pytest.raises(ForeignStoreError, match="not a glacierstack cube"):
        _clear(tmp_path / "out", "cubes/poiqu.zarr")
    assert (user / "mine.txt").exists()
