"""`router.asgi:app` — the router for any ASGI server (granian, hypercorn, uvicorn --workers).

The routes file comes from STRANGLER_ROUTES (default routes.yaml). `python -m router` is the
usual way to run it; this module is for running under another server.
"""

from __future__ import annotations

import os

from router.proxy import Router

app = Router(config_path=os.environ.get("STRANGLER_ROUTES", "routes.yaml"),
             metrics_dir=os.environ.get("STRANGLER_METRICS_DIR"))
