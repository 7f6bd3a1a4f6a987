"""``python -m contextmap.probe``: the child process that configures Django and reports what it sees.

The CLI never configures Django in its own process (see stack/localshop.py); it runs this module
with the project's settings and reads one JSON document back from ``--out``:
``{"ok": true, "static": {...registry...}, "observed": [request records]}`` or
``{"ok": false, "error": kind, "message": what to do}``.

With ``--exercise`` it creates the project's test databases (as Django's test runner does),
logs a superuser in and sends a GET to every URL pattern (path parameters filled with 1 or
"x"), recording the tables each one reads and writes: a quick map without traffic.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_GROUP = re.compile(r"\(\?P<\w+>[^)]*\)")
_VALUES = {"int": "1", "slug": "x", "str": "x", "path": "x",
           "uuid": "00000000-0000-0000-0000-000000000001"}


def url_paths() -> list[str]:
    """One example path per URL pattern of the root URLconf (route patterns; plain regexes)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[str] = []

    def piece(pattern: Any) -> str | None:
        text = str(pattern)
        if pattern.__class__.__name__ == "RegexPattern":
            text = _GROUP.sub("1", text.lstrip("^").rstrip("$").replace("\\Z", "")).replace("\\", "")
            if re.search(r"[()\[\]?*+|{}]", text):
                return None  # a regex we will not guess a value for
            return text
        return _PARAM.sub(lambda m: _VALUES.get(m.group(1) or "str", "1"), text)

    def walk(patterns: Any, prefix: str) -> None:
        for p in patterns:
            part = piece(p.pattern)
            if part is None:
                continue
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + part)
            elif isinstance(p, URLPattern):
                found.append("/" + (prefix + part).lstrip("/"))

    walk(get_resolver().url_patterns, "")
    return sorted(dict.fromkeys(found))


def exercise() -> list[dict[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    from contextmap.middleware import endpoint_of, view_app
    from contextmap.recorder import from_registry

    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        recorder = from_registry()
        client = Client(raise_request_exception=False)
        try:
            user = get_user_model()._default_manager.create_superuser(
                "contextmap", "contextmap@example.invalid", "contextmap")
            client.force_login(user)
        except Exception:  # a custom user model without create_superuser: stay anonymous
            pass
        records = []
        for path in url_paths():
            with recorder.request(f"GET {path}") as record:
                response = client.get(path)
            request = getattr(response, "wsgi_request", None)
            if request is not None:
                record.endpoint = endpoint_of(request)
                record.view_app = view_app(recorder, request)
            record.status = response.status_code
            records.append(record.to_json())
        return records
    finally:
        teardown_databases(old, verbosity=0)


def run(settings: str, do_exercise: bool) -> dict[str, Any]:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        importlib.import_module(settings)
    except Exception as exc:  # any import error of the user's settings
        return {"ok": False, "error": "settings",
                "message": f"the settings module {settings!r} does not import: "
                           f"{type(exc).__name__}: {exc}. Give its dotted path as you would in "
                           f"DJANGO_SETTINGS_MODULE, from the folder that holds the project "
                           f"(run from there, or set PYTHONPATH)."}
    import django

    try:
        django.setup()
    except Exception as exc:
        return {"ok": False, "error": "setup",
                "message": f"Django could not start with {settings!r}: {type(exc).__name__}: {exc}"}
    from contextmap.registry import describe, project_apps

    if not project_apps():
        return {"ok": False, "error": "no-apps",
                "message": f"{settings!r} installs no apps of its own (only Django's or libraries'): "
                           f"add the project's apps to INSTALLED_APPS, or point --settings at the "
                           f"project to map."}
    out: dict[str, Any] = {"ok": True, "static": describe(), "observed": []}
    if do_exercise:
        out["observed"] = exercise()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contextmap.probe")
    parser.add_argument("--settings", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--exercise", action="store_true")
    args = parser.parse_args(argv)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # the project may print; keep our channel clean
    try:
        result = run(args.settings, args.exercise)
    except Exception as exc:
        result = {"ok": False, "error": "crash", "message": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    finally:
        sys.stdout = real_stdout
    args.out.write_text(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
