"""What the source says, read with ``ast`` and no Django: imports between apps, signal sends.

Every ``.py`` file under an app's folder is parsed; absolute and relative imports are resolved
to module names and then to the app that holds them (longest app name first). An import inside
a function body is marked ``local`` — the usual way a circular import is papered over.
Modules of the project that belong to no app (a ``utils.py`` beside the apps) are reported as
shared modules with the apps that import them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class App:
    label: str
    name: str  # dotted module path, "monolith.orders"
    path: Path


@dataclass(frozen=True)
class ImportSite:
    from_app: str
    module: str  # the imported module, resolved
    where: str  # file:line, relative to the project root
    local: bool


def _module_name(app: App, file: Path) -> str:
    rel = file.relative_to(app.path).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([app.name, *parts])


def _is_package(file: Path) -> bool:
    return file.name == "__init__.py"


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Nodes with whether they sit inside a function body."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, local = stack.pop()
        yield node, local
        inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def app_files(app: App) -> list[Path]:
    return sorted(p for p in app.path.rglob("*.py")
                  if "migrations" not in p.relative_to(app.path).parts)


def imports_of(app: App, root: Path) -> list[ImportSite]:
    sites: list[ImportSite] = []
    for file in app_files(app):
        try:
            tree = ast.parse(file.read_text(), filename=str(file))
        except (OSError, SyntaxError, ValueError):
            continue
        here = _module_name(app, file)
        package = here if _is_package(file) else here.rpartition(".")[0]
        rel = str(file.resolve().relative_to(root)) if file.resolve().is_relative_to(root) else str(file)
        for node, local in _walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                    base = ".".join([*anchor, *([base] if base else [])])
                # "from pkg import mod" may name a module: keep both, resolution picks the longest
                targets = [f"{base}.{a.name}" for a in node.names if a.name != "*"] or [base]
            for t in targets:
                sites.append(ImportSite(app.label, t, f"{rel}:{node.lineno}", local))  # type: ignore[attr-defined]
    return sites


def resolve_app(module: str, apps: list[App]) -> str | None:
    best: App | None = None
    for app in apps:
        inside = module == app.name or module.startswith(app.name + ".")
        if inside and (best is None or len(app.name) > len(best.name)):
            best = app
    return best.label if best else None


def resolve_project_module(module: str, root: Path, tops: set[str]) -> str | None:
    """The project module (not in any app) an import names, trimming imported attributes."""
    parts = module.split(".")
    if parts[0] not in tops:
        return None
    while parts:
        candidate = root.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts) if len(parts) > 1 else None
        parts.pop()
    return None


@dataclass(frozen=True)
class SendSite:
    name: str  # the signal's variable name at the call site
    where: str
    app: str


def signal_sends(app: App, root: Path, names: set[str]) -> list[SendSite]:
    """``<name>.send(`` / ``.send_robust(`` calls for signal variable names we know of."""
    sends: list[SendSite] = []
    for file in app_files(app):
        try:
            tree = ast.parse(file.read_text(), filename=str(file))
        except (OSError, SyntaxError, ValueError):
            continue
        rel = str(file.resolve().relative_to(root)) if file.resolve().is_relative_to(root) else str(file)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("send", "send_robust", "asend", "asend_robust")):
                target = node.func.value
                name = target.id if isinstance(target, ast.Name) else \
                    target.attr if isinstance(target, ast.Attribute) else None
                if name in names:
                    sends.append(SendSite(name, f"{rel}:{node.lineno}", app.label))
    return sends
