"""A service's errors: one root, translated to DRF-style HTTP bodies at one edge.

    ServiceError                 anything the service raises on purpose
    ├── ConfigError              bad settings (env vars); raised before serving
    ├── MigrationError           the schema is not at the Alembic head
    └── APIError                 an answer for the client: status + DRF-style body
        ├── NotAuthenticated     401: identity header missing, forged, expired or malformed
        ├── PermissionDenied     403: valid identity, but not staff for a staff-only write
        ├── NotFound             404: unknown id, or a page that does not exist
        ├── ParseError           400: a request body that is not JSON
        └── ValidationError      400: a write payload or query value that fails validation

A service's app turns an `APIError` into `{"detail": ...}` (or a field -> messages dict for
validation errors), the body shape Django REST framework uses, so clients of the monolith
see the same errors from the service.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Root of every error an extracted service raises on purpose."""


class ConfigError(ServiceError):
    """A setting is missing or invalid; the message says which env var and how to fix it."""


class MigrationError(ServiceError):
    """The database schema is not at the Alembic head."""


class APIError(ServiceError):
    """An error answered to the client: an HTTP status and a DRF-style body."""

    status_code = 500
    default_detail = "A server error occurred."

    def __init__(self, detail: Any = None) -> None:
        self.detail = self.default_detail if detail is None else detail
        super().__init__(str(self.detail))

    def body(self) -> Any:
        if isinstance(self.detail, dict | list):
            return self.detail
        return {"detail": self.detail}


class NotAuthenticated(APIError):
    status_code = 401
    default_detail = "Authentication credentials were not provided."


class PermissionDenied(APIError):
    status_code = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(APIError):
    status_code = 404
    default_detail = "Not found."


class ParseError(APIError):
    status_code = 400
    default_detail = "Malformed request."


class ValidationError(APIError):
    status_code = 400
    default_detail = "Invalid input."
