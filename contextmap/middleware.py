"""A Django middleware that records, per request, the tables read and written, as JSON lines.

Add it to a project's MIDDLEWARE (first, so it sees every other middleware's queries too):

    MIDDLEWARE = ["contextmap.middleware.TableRecorderMiddleware", *MIDDLEWARE]

and run traffic; each request appends one line to ``$STRANGLER_MAP_OBSERVE`` (default
``.strangler/map-observe.jsonl``). `strangler map --observe FILE` reads it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contextmap.recorder import Recorder, RequestRecord, from_registry

OBSERVE_ENV = "STRANGLER_MAP_OBSERVE"
DEFAULT_OBSERVE = Path(".strangler") / "map-observe.jsonl"
RECORD_VERSION = 1
_ANCHORS = re.compile(r"\^|\$|\\Z")
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def endpoint_of(request: Any) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return f"{request.method} {request.path}"
    route = _ANCHORS.sub("", match.route)
    route = _GROUP.sub(lambda m: f"<{m.group(1)}>", route).replace("\\", "")
    return f"{request.method} /{route}"


def view_app(recorder: Recorder, request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    func = getattr(match, "func", None)
    func = getattr(func, "view_class", None) or getattr(func, "cls", None) or func
    try:
        filename = inspect.getsourcefile(func) if func is not None else None  # type: ignore[arg-type]
    except TypeError:
        return None
    return recorder.locator.classify(str(Path(filename).resolve()))[0] if filename else None


def as_line(record: RequestRecord) -> str:
    return json.dumps({"contextmap": RECORD_VERSION, **record.to_json()}, sort_keys=True)


class TableRecorderMiddleware:
    _lock = threading.Lock()

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.recorder = from_registry()
        self.path = Path(os.environ.get(OBSERVE_ENV) or DEFAULT_OBSERVE)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, request: Any) -> Any:
        with self.recorder.request(f"{request.method} {request.path}") as record:
            response = self.get_response(request)
        record.endpoint = endpoint_of(request)
        record.view_app = view_app(self.recorder, request)
        record.status = getattr(response, "status_code", None)
        line = as_line(record) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line)
        return response
