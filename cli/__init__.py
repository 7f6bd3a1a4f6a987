"""The `strangler` command: wires router, CDC, services and the monolith together."""
