"""Fixtures shared by the glacierstack tests."""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

STAC_CORE = "https://schemas.stacspec.org/v1.1.0/{}-spec/json-schema/{}.json"
PROJ_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_V11 = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_V11 = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
SAR_V10 = "https://stac-extensions.github.io/sar/v1.0.0/schema.json"
PREFIXES = {"proj:": PROJ_V2, "raster:": RASTER_V11, "eo:": EO_V11, "sar:": SAR_V10}


def _core_validators() -> dict[str, Any]:
    """Offline Draft-7 validators of the STAC 1.1.0 core schemas that pystac ships.

    Every ``$ref`` resolves to pystac's bundled copy (or the JSON-Schema metaschemas); any
    other reference raises instead of fetching, so the tests never touch the network.
    """
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource

    root = importlib.resources.files("pystac.validation.jsonschemas")
    resources = []
    for f in (root / "stac-spec" / "v1.1.0").iterdir():
        name = f.name.removesuffix(".json")
        spec = name if name in ("catalog", "collection") else "item"
        resources.append((STAC_CORE.format(spec, name), json.loads(f.read_text())))
    for f in (root / "geojson").iterdir():
        resources.append((f"https://geojson.org/schema/{f.name}", json.loads(f.read_text())))

    def offline(uri: str) -> Resource:
        raise LookupError(f"schema {uri} is not bundled; the tests do not download schemas")

    registry = Registry(retrieve=offline).with_resources(  # type: ignore[call-arg]
        (uri, Resource.from_contents(c)) for uri, c in resources
    )
    schemas = dict(resources)
    return {
        kind: Draft7Validator(schemas[STAC_CORE.format(kind, kind)], registry=registry)
        for kind in ("item", "collection", "catalog")
    }


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path, k, v
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}/{i}")


def _extension_errors(doc: dict[str, Any]) -> list[str]:
    """Rules of the declared extension versions, checked with pystac's own tables."""
    from pystac.extensions.eo import Band
    from pystac.extensions.raster import DataType

    declared = set(doc.get("stac_extensions", []))
    errors = [f"undeclared-by-us extension {u}" for u in declared - set(PREFIXES.values())]
    used = {PREFIXES[p] for _, k, _ in _walk(doc) for p in PREFIXES if k.startswith(p)}
    errors += [f"uses {u} without declaring it" for u in used - declared]
    data_types = {d.value for d in DataType}
    for where, key, value in _walk(doc):
        if key == "proj:epsg" and PROJ_V2 in declared:
            errors.append(f"{where}: proj:epsg is not part of projection v2.0.0")
        if key == "raster:bands":
            errors += [f"{where}: data_type {b.get('data_type')!r}" for b in value
                       if b.get("data_type") not in data_types]  # fmt: skip
        if key == "eo:bands":
            names = [b["common_name"] for b in value if "common_name" in b]
            errors += [f"{where}: eo common_name {n!r}" for n in names if not Band.band_range(n)]
    if SAR_V10 in declared:  # the four fields sar v1.0.0 requires of an item
        need = {"sar:instrument_mode", "sar:frequency_band", "sar:polarizations",
                "sar:product_type"}  # fmt: skip
        errors += [f"missing {k}" for k in sorted(need - set(doc.get("properties", {})))]
    return errors


@pytest.fixture(scope="session")
def stac_errors() -> Callable[[Path], dict[str, list[str]]]:
    """Return ``check(folder) -> {json file: [errors]}`` over every STAC file under a folder."""
    validators = _core_validators()
    kinds = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}

    def check(folder: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        files = sorted(Path(folder).rglob("*.json"))
        assert files, f"no STAC JSON under {folder}"
        for f in files:
            doc = json.loads(f.read_text())
            kind = kinds[doc["type"]]
            errs = [f"{kind} schema: {e.message}" for e in validators[kind].iter_errors(doc)]
            errs += _extension_errors(doc)
            if errs:
                out[str(f.relative_to(folder))] = errs
        return out

    return check
