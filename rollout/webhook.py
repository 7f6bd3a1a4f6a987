"""Webhooks around an analysis (Flagger's pre-rollout / confirm-promotion hooks): POST a JSON
body, 2xx passes, anything else — another status, a refused connection, the timeout — fails
the check, with the reason in the rollout's history. The stdlib client on purpose: one POST
per check, in a process that imports little."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def post(url: str, body: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """(passed, what happened) for one hook call."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the spec's URL)
            status = resp.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace").strip()
        return False, f"HTTP {exc.code}" + (f": {detail}" if detail else "")
    except TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return False, f"no answer within {timeout:g}s"
        return False, f"unreachable ({reason})"
    return (200 <= status < 300), f"HTTP {status}"
