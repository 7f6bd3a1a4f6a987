"""Where the CLI keeps local state: the git-ignored `.strangler/` folder at the repo root.

    .strangler/run/<name>.json   one pid file per supervised process (pid, start time, port)
    .strangler/run/stack.json    what `up` started: mode, router URL, routes file
    .strangler/logs/<name>.log   each process's stdout+stderr
    .strangler/admin-token       the router admin token `up` generated (mode 0600)

``STRANGLER_STATE_DIR`` moves the whole folder (tests use a temporary one).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

ENV_STATE_DIR = "STRANGLER_STATE_DIR"
ENV_ADMIN_TOKEN = "STRANGLER_ADMIN_TOKEN"


def state_dir() -> Path:
    """The state folder (created on first use)."""
    explicit = os.environ.get(ENV_STATE_DIR)
    path = Path(explicit) if explicit else Path.cwd() / ".strangler"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    path = state_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = state_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def admin_token(*, create: bool = False) -> str | None:
    """The admin token: ``STRANGLER_ADMIN_TOKEN``, else the one `up` stored, else a new one."""
    explicit = os.environ.get(ENV_ADMIN_TOKEN)
    if explicit:
        return explicit
    path = state_dir() / "admin-token"
    if path.exists():
        return path.read_text().strip() or None
    if not create:
        return None
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def identity_secret() -> str:
    """The identity-header HMAC secret shared by the router and the services of `up`."""
    explicit = os.environ.get("STRANGLER_IDENTITY_SECRET")
    if explicit:
        return explicit
    path = state_dir() / "identity-secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def running_stack() -> dict[str, Any] | None:
    """What `up` wrote about the stack it runs from this state folder (`.strangler/run/stack.json`:
    stack/model.Stack.describe), or None. The one reader of that file."""
    try:
        doc = json.loads((run_dir() / "stack.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def stack_process(stack: dict[str, Any], role: str) -> dict[str, Any] | None:
    """The running stack's first process of `role` (monolith, router, dataplane, ...), or None."""
    return next((p for p in stack.get("processes") or [] if isinstance(p, dict) and p.get("role") == role), None)


def running_routes(default: Path) -> Path:
    """The routes file the running stack's router serves, else `default`: a command reading the
    ledger or the table follows the stack."""
    found = (running_stack() or {}).get("routes")
    return Path(found) if found else default
