"""Errors of the throwaway-service helpers.

    ServiceUnavailable   a server could not be found, started or reached; the message says
                         what is missing and how to install or point at one
"""


class ServiceUnavailable(RuntimeError):
    """A required local service (PostgreSQL, Kafka) cannot be started or reached."""
