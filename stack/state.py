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


def running_routes(default: Path) -> Path:
    """The routes file the running stack's router serves (`.strangler/run/stack.json`, written
    by `up`), else `default`: a command reading the ledger or the table follows the stack."""
    stack_file = run_dir() / "stack.json"
    try:
        found = json.loads(stack_file.read_text()).get("routes")
    except (OSError, ValueError, AttributeError):
        found = None
    return Path(found) if found else default
