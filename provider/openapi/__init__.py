"""The OpenAPI 3 document, assembled from one YAML file per route module.

``_base.yaml`` holds the document's head and shared components; ``<module>.yaml`` (named after
the route module, e.g. ``jobs.yaml`` for ``provider.routes.jobs``) holds that module's paths,
plus optional ``components`` of its own. Only modules registered on the app are included, so
the document always matches ``app.url_map``. To document a new blueprint, drop its YAML here.
"""

from __future__ import annotations

import copy
import functools
from importlib.resources import files
from typing import Any

import yaml
from flask import Flask

from tidewater import __version__


@functools.cache
def _load(name: str) -> dict[str, Any] | None:
    resource = files(__name__).joinpath(f"{name}.yaml")
    if not resource.is_file():
        return None
    document = yaml.safe_load(resource.read_text(encoding="utf-8"))
    return document if isinstance(document, dict) else {}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def module_names(app: Flask) -> list[str]:
    """The short module names of the app's blueprints (``jobs`` for ``provider.routes.jobs``)."""
    return [bp.import_name.rsplit(".", 1)[-1] for bp in app.blueprints.values()]


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s registered blueprints."""
    base = _load("_base")
    assert base is not None
    spec = copy.deepcopy(base)
    spec["info"]["version"] = __version__
    for name in module_names(app):
        part = _load(name)
        if part is None:
            continue
        part = dict(part)
        _merge(spec.setdefault("components", {}), part.pop("components", {}) or {})
        _merge(spec["paths"], part)
    return spec
