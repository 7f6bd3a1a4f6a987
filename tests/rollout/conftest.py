"""The router tests' `start_router` fixture (a real `python -m router` on loopback) for the
rollout end-to-end tests."""

from tests.router.conftest import start_router  # noqa: F401
