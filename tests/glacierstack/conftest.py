"""Fixtures shared by the glacierstack tests."""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

STAC_CORE = "https://schemas.stacspec.org/v1.1.0/{}-spec/json-schema/{}.json"
EXTENSION_SCHEMAS = Path(__file__).parents[1] / "data" / "stac-schemas"
"""The official extension schemas, byte for byte as stac-extensions.github.io serves them."""
PREFIXES = {
    "proj:": "projection",
    "raster:": "raster",
    "eo:": "eo",
    "sar:": "sar",
    "sat:": "sat",
    "view:": "view",
}
"""Field prefixes of the extensions we have schemas for: using one obliges declaring it."""


def _registry() -> tuple[Any, dict[str, Any]]:
    """Offline registry of the STAC 1.1.0 core schemas and of the stored extension schemas.

    Core schemas are pystac's bundled copies; extension schemas are the files under
    ``tests/data/stac-schemas/``, registered under their ``$id`` (the URL an item declares in
    ``stac_extensions``). Any other reference raises instead of fetching, so the tests never
    touch the network.
    """
    from referencing import Registry, Resource

    root = importlib.resources.files("pystac.validation.jsonschemas")
    resources = []
    for f in (root / "stac-spec" / "v1.1.0").iterdir():
        name = f.name.removesuffix(".json")
        spec = name if name in ("catalog", "collection") else "item"
        resources.append((STAC_CORE.format(spec, name), json.loads(f.read_text())))
    for f in (root / "geojson").iterdir():
        resources.append((f"https://geojson.org/schema/{f.name}", json.loads(f.read_text())))
    for f in sorted(EXTENSION_SCHEMAS.glob("*.json")):
        doc = json.loads(f.read_bytes())
        resources.append((doc["$id"].rstrip("#"), doc))

    def offline(uri: str) -> Resource:
        raise LookupError(f"schema {uri} is not stored; the tests do not download schemas")

    registry = Registry(retrieve=offline).with_resources(  # type: ignore[call-arg]
        (uri, Resource.from_contents(c)) for uri, c in resources
    )
    return registry, dict(resources)


def _walk_keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v)


def _undeclared(doc: dict[str, Any]) -> list[str]:
    """Fields of a stored extension used without declaring that extension (any version)."""
    declared = " ".join(doc.get("stac_extensions", []))
    used = {PREFIXES[p] for k in _walk_keys(doc) for p in PREFIXES if k.startswith(p)}
    return [f"uses {n}: fields without declaring the {n} extension" for n in sorted(used)
            if f"stac-extensions.github.io/{n}/" not in declared]  # fmt: skip


@pytest.fixture(scope="session")
def stac_errors() -> Callable[[Path], dict[str, list[str]]]:
    """Return ``check(folder) -> {json file: [errors]}`` over every STAC file under a folder."""
    from jsonschema import Draft7Validator

    registry, schemas = _registry()
    kinds = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}

    def validator(uri: str) -> Draft7Validator:
        return Draft7Validator(schemas[uri], registry=registry)

    def check(folder: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        files = sorted(Path(folder).rglob("*.json"))
        assert files, f"no STAC JSON under {folder}"
        for f in files:
            doc = json.loads(f.read_text())
            kind = kinds[doc["type"]]
            errs = [f"{kind} schema: {e.message}"
                    for e in validator(STAC_CORE.format(kind, kind)).iter_errors(doc)]  # fmt: skip
            for uri in doc.get("stac_extensions", []):
                if uri not in schemas:
                    errs.append(f"declares {uri}, whose schema is not in {EXTENSION_SCHEMAS}")
                    continue
                errs += [f"{uri}: {e.message} (at {'/'.join(map(str, e.absolute_path))})"
                         for e in validator(uri).iter_errors(doc)]  # fmt: skip
            errs += _undeclared(doc)
            if errs:
                out[str(f.relative_to(folder))] = errs
        return out

    return check
