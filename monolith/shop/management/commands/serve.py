"""``python -m monolith serve --host H --port P [--workers N]``: the shop under uvicorn (ASGI)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve the shop with uvicorn (a real ASGI server, not runserver)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--log-level", default="warning")

    def handle(self, *args: object, **opts: object) -> None:
        import uvicorn

        uvicorn.run(
            "monolith.asgi:application", host=str(opts["host"]), port=int(opts["port"]),  # type: ignore[call-overload]
            workers=int(opts["workers"]), log_level=str(opts["log_level"]),  # type: ignore[call-overload]
            access_log=False, lifespan="off",
            proxy_headers=False,  # TrustedProxyMiddleware decides, from the real peer address
        )
