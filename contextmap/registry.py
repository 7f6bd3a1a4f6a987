"""What Django's registry knows, read inside the mapped project's process (after django.setup).

Apps and their folders, tables and their owning app, the foreign-key graph (string references
resolved by Django; many-to-many through tables and generic foreign keys included), and the
signal receivers connected at start-up. Each fact carries ``file:line`` where the source says it.
"""

from __future__ import annotations

import ast
import gc
import inspect
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any


def project_root() -> Path:
    """The folder holding the settings module's top-level package (``monolith/`` → its parent)."""
    top = os.environ["DJANGO_SETTINGS_MODULE"].split(".")[0]
    module = sys.modules.get(top) or __import__(top)
    return Path(module.__file__).resolve().parent.parent  # type: ignore[arg-type]


def app_paths() -> dict[str, Path]:
    from django.apps import apps

    return {cfg.label: Path(cfg.path).resolve() for cfg in apps.get_app_configs()}


def project_apps() -> list[str]:
    """Labels of the apps whose code lives in the project (not Django's or a library's)."""
    root = str(project_root()) + "/"
    return [label for label, path in app_paths().items()
            if (str(path) + "/").startswith(root) and "site-packages" not in str(path)]


def middleware_files() -> set[str]:
    """Source files of the project's MIDDLEWARE classes (they wrap every request)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    files = set()
    for dotted in getattr(settings, "MIDDLEWARE", None) or []:
        try:
            filename = inspect.getsourcefile(import_string(dotted))
        except (ImportError, TypeError):
            continue
        if filename:
            files.add(str(Path(filename).resolve()))
    return files


def table_owners() -> dict[str, str]:
    """db_table → app label, auto-created many-to-many tables included."""
    from django.apps import apps

    owners: dict[str, str] = {}
    for model in apps.get_models(include_auto_created=True):
        owners[model._meta.db_table] = model._meta.app_label
    return owners


def _rel(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return None


@cache
def _class_field_lines(filename: str, class_name: str) -> dict[str, int]:
    try:
        tree = ast.parse(Path(filename).read_text())
    except (OSError, SyntaxError):
        return {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            lines: dict[str, int] = {}
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                    [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                for t in targets:
                    if isinstance(t, ast.Name):
                        lines[t.id] = stmt.lineno
            return lines
    return {}


def _field_where(model: Any, name: str, root: Path) -> str | None:
    try:
        filename = inspect.getsourcefile(model)
    except TypeError:
        return None
    rel = _rel(filename, root)
    if rel is None or filename is None:
        return None
    line = _class_field_lines(filename, model.__name__).get(name)
    return f"{rel}:{line}" if line else rel


def foreign_keys() -> list[dict[str, Any]]:
    """Every relation leaving a model: FK, one-to-one, many-to-many (its through table) and generic FK."""
    from django.apps import apps

    root = project_root()
    out: list[dict[str, Any]] = []
    for model in apps.get_models():
        meta = model._meta
        for f in meta.get_fields(include_hidden=False):
            if f.auto_created and not f.concrete:
                continue  # reverse side
            kind = None
            if f.__class__.__name__ == "GenericForeignKey":
                ct = meta.get_field(f.ct_field)
                # any model's rows: no one table, no constraint, still a link to every context
                out.append({"from_table": meta.db_table, "to_table": None,
                            "from_app": meta.app_label, "to_app": None,
                            "field": f"{meta.label}.{f.name}", "kind": "generic_foreign_key",
                            "via": f"{meta.db_table}.{ct.column} → {ct.related_model._meta.db_table}",
                            "where": _field_where(model, f.name, root)})
                continue
            if f.many_to_one or f.one_to_one:
                kind = "one_to_one" if f.one_to_one else "foreign_key"
            elif f.many_to_many and f.concrete:
                kind = "many_to_many"
            if kind is None or f.related_model is None or isinstance(f.related_model, str):
                continue
            to = f.related_model._meta
            entry = {"from_table": meta.db_table, "to_table": to.db_table,
                     "from_app": meta.app_label, "to_app": to.app_label,
                     "field": f"{meta.label}.{f.name}", "kind": kind,
                     "where": _field_where(model, f.name, root)}
            if kind == "many_to_many":
                entry["through_table"] = f.remote_field.through._meta.db_table
            out.append(entry)
    return out


def _module_of_object(obj: Any) -> tuple[str, str] | None:
    """(module, attribute) where an object is defined at module level, by identity."""
    for name, module in list(sys.modules.items()):
        d = getattr(module, "__dict__", None)
        if not d:
            continue
        for attr, value in list(d.items()):
            if value is obj:
                return name, attr
    return None


def signals() -> list[dict[str, Any]]:
    """Connected receivers of every Signal alive in the process, with where each is defined."""
    from django.apps import apps
    from django.dispatch import Signal

    root = project_root()
    models_by_id = {id(m): m for m in apps.get_models()}
    found: list[dict[str, Any]] = []
    for signal in [o for o in gc.get_objects() if issubclass(type(o), Signal)]:
        if not signal.receivers:
            continue
        origin = _module_of_object(signal)
        if origin is None:
            continue
        module, name = origin
        for entry in signal.receivers:
            lookup_key, ref = entry[0], entry[1]
            receiver = ref() if callable(ref) and not inspect.isfunction(ref) and \
                hasattr(ref, "__callback__") else ref
            if receiver is None:
                continue
            func = getattr(receiver, "__func__", receiver)
            try:
                filename = inspect.getsourcefile(func)
                line = func.__code__.co_firstlineno
            except (TypeError, AttributeError):
                continue
            rel = _rel(filename, root)
            if rel is None:
                continue  # a framework's own receiver
            sender = models_by_id.get(lookup_key[1]) if isinstance(lookup_key[1], int) else None
            found.append({
                "signal": f"{module}.{name}", "signal_module": module,
                "sender": sender._meta.label if sender is not None else None,
                "sender_app": sender._meta.app_label if sender is not None else None,
                "receiver": f"{func.__module__}.{func.__qualname__}",
                "receiver_module": func.__module__, "where": f"{rel}:{line}",
            })
    found.sort(key=lambda s: (s["signal"], s["receiver"]))
    return found


def describe() -> dict[str, Any]:
    """The whole static picture of the configured project, as JSON-ready data."""
    from django.apps import apps

    root = project_root()
    ours = set(project_apps())
    app_list = []
    for cfg in apps.get_app_configs():
        app_list.append({
            "label": cfg.label, "name": cfg.name, "path": str(Path(cfg.path).resolve()),
            "project": cfg.label in ours,
            "tables": sorted(m._meta.db_table for m in cfg.get_models(include_auto_created=True)),
        })
    return {"project": os.environ["DJANGO_SETTINGS_MODULE"].split(".")[0], "root": str(root),
            "apps": app_list, "foreign_keys": foreign_keys(), "signals": signals()}
