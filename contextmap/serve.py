"""``python -m contextmap.serve``: serve a Django project with the table recorder installed.

For recording an observe file without editing the project's settings:

    python -m contextmap.serve --settings monolith.settings --observe .strangler/map.jsonl --port 8000
    (run traffic against it, stop it with Ctrl-C)
    strangler map --settings monolith.settings --observe .strangler/map.jsonl

It puts contextmap.middleware.TableRecorderMiddleware first in MIDDLEWARE and serves the
project's WSGI handler with the standard library's threaded server (a recording tool, not a
production server). The database is whatever the settings choose.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from contextmap.middleware import OBSERVE_ENV

MIDDLEWARE = "contextmap.middleware.TableRecorderMiddleware"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contextmap.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--settings", required=True)
    parser.add_argument("--observe", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    os.environ[OBSERVE_ENV] = str(args.observe.resolve())
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    import django
    from django.conf import settings

    django.setup()
    if MIDDLEWARE not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    with make_server(args.host, args.port, application, server_class=_Server,
                     handler_class=_QuietHandler) as server:
        print(f"serving {args.settings} on http://{args.host}:{server.server_port}/ with the table "
              f"recorder; requests go to {args.observe} (Ctrl-C stops)", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
