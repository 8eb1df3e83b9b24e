"""The OpenAPI document: FastAPI's, with the Problem body of every error and the limits of the tile parameters.

TiTiler declares its size, list and text parameters without maxima; this service's limits are added from the
constants ``check_tile_query`` enforces (``SIZE_LIMITS``, ``MAX_LIST_VALUES``, ...), so what the document
promises and what the service accepts cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from backend.api.routers.tiles import COLORMAPS, MAX_LIST_VALUES, MAX_TEXT, SIZE_LIMITS
from backend.api.schemas import Problem
from backend.api.shared import MAX_ZOOM

PROBLEM_REF = "#/components/schemas/Problem"
#: Text parameters of the tile endpoints, each at most MAX_TEXT characters.
TEXT_PARAMETERS = ("expression", "algorithm_params", "color_formula")
#: algorithm_params is a JSON object (the algorithm's keyword arguments).
JSON_OBJECT = r"^\s*\{[\s\S]*\}\s*$"
#: Statistics of TiTiler's BandStatistics that have no value (null) when no cell of the area is valid.
STATISTICS_OF_VALUES = ("min", "max", "mean", "std", "median", "majority", "minority")
#: Examples of TiTiler's parameters that fit layers of one band (its own name bands b2 and b3).
ONE_BAND_EXAMPLES: dict[str, dict[str, Any]] = {
    "bidx": {"one-band": {"summary": "The one band of every layer", "value": [1]}},
    "expression": {"band-math": {"summary": "Band math on the one band (b1)", "value": "b1*100"}},
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document of an app's routes, with problem bodies and tile parameter limits."""
    document = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                           description=app.description, routes=app.routes)
    add_problem_bodies(document)
    limit_tile_parameters(document)
    allow_null_statistics(document)
    spell_tuples(document)
    describe_binary_bodies(document)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve build_openapi's document at /openapi.json (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_binary_bodies(document: dict[str, Any]) -> None:
    """Give the image and binary bodies of 200 responses (TiTiler's tiles) a schema: a binary string."""
    for _, op in _operations(document):
        for media, body in op["responses"].get("200", {}).get("content", {}).items():
            if not body.get("schema") and "json" not in media:
                body["schema"] = {"type": "string", "format": "binary"}


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, operation) of every operation of a document."""
    return [(path, op) for path, item in document.get("paths", {}).items() for op in item.values()
            if isinstance(op, dict) and "responses" in op]


def add_problem_bodies(document: dict[str, Any]) -> None:
    """A JSON Problem body on every 4xx and 5xx response that declares no body of its own."""
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for _, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status[:1] in ("4", "5") and "content" not in response:
                response["content"] = {"application/json": {"schema": {"$ref": PROBLEM_REF}}}


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a parameter schema."""
    return [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]


def _limit(param: dict[str, Any]) -> None:
    """Write the service's limits into one tile parameter's schema."""
    name, schema = param["name"], param["schema"]
    for branch in _branches(schema):
        kind = branch.get("type")
        if name in SIZE_LIMITS and kind in ("integer", "number"):
            branch["minimum"], branch["maximum"] = SIZE_LIMITS[name]
            if name == "buffer":
                branch["multipleOf"] = 0.5
        elif name in TEXT_PARAMETERS and kind == "string":
            branch["maxLength"] = MAX_TEXT
            if name == "algorithm_params":
                branch["pattern"] = JSON_OBJECT
        elif name == "colormap_name" and kind == "string":
            branch["enum"] = COLORMAPS
        elif kind == "array" and name in ("p", "c", "bidx", "rescale"):
            branch["maxItems"] = MAX_LIST_VALUES
            if name == "p":
                branch["items"] = {**branch.get("items", {}), "minimum": 0, "maximum": 100}
            elif name == "bidx":
                branch["items"] = {"type": "integer", "enum": [1]}
    if param["in"] == "path":
        bounds = {"z": (0, MAX_ZOOM), "x": (0, None), "y": (0, None), "lon": (-180, 180), "lat": (-90, 90)}
        if name in bounds:
            lo, hi = bounds[name]
            schema["minimum"] = lo
            if hi is not None:
                schema["maximum"] = hi
    if name in ONE_BAND_EXAMPLES and "examples" in param:
        param["examples"] = ONE_BAND_EXAMPLES[name]


def limit_tile_parameters(document: dict[str, Any]) -> None:
    """Documented maxima on the tile endpoints' size, list and text parameters, tile indexes and points."""
    for path, operation in _operations(document):
        if path.startswith("/tiles/"):
            for param in operation.get("parameters", []):
                _limit(param)


def allow_null_statistics(document: dict[str, Any]) -> None:
    """TiTiler's band statistics of an area without valid cells are null (NaN in JSON); its model says number."""
    properties = document.get("components", {}).get("schemas", {}).get("BandStatistics", {}).get("properties", {})
    for name in STATISTICS_OF_VALUES:
        if properties.get(name, {}).get("type") == "number":
            title = properties[name].get("title", name)
            properties[name] = {"anyOf": [{"type": "number"}, {"type": "null"}], "title": title,
                                "description": "null when no cell of the area is valid"}


def spell_tuples(node: Any) -> None:
    """Spell tuples (``prefixItems``) as ``items`` with a fixed length.

    ``prefixItems`` is OpenAPI 3.1 only; tools that rewrite it to the older ``items: [...]`` spelling inside
    nested response schemas then reject the document (TiTiler's Info has ``list[tuple[str, dict]]``). A tuple
    whose positions share one schema keeps its meaning exactly; for the others each position may hold any of the
    position schemas (``anyOf``), a looser but valid description of the same arrays.
    """
    if isinstance(node, dict):
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and prefix and "items" not in node:
            del node["prefixItems"]
            unique = [p for i, p in enumerate(prefix) if p not in prefix[:i]]
            node["items"] = unique[0] if len(unique) == 1 else {"anyOf": unique}
            node["minItems"] = node["maxItems"] = len(prefix)
        for value in node.values():
            spell_tuples(value)
    elif isinstance(node, list):
        for value in node:
            spell_tuples(value)
