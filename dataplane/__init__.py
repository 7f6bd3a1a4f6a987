"""Render routes.yaml for other data planes: nginx and HAProxy with the router's cohorts,
Kubernetes Gateway API and Istio with its routes and weights (no cohorts there).

    model.py    routes.yaml → Plan (matching order, slices, key sources, ...)
    nginx.py    Plan → nginx.conf (split_clients: nginx's own MurmurHash2)
    haproxy.py  Plan → haproxy.cfg + strangler.lua (the same MurmurHash2 in HAProxy's Lua)
    gateway.py  Plan → Gateway API HTTPRoutes (YAML documents)
    istio.py    Plan → Istio VirtualService + DestinationRules (YAML documents)
    k8s.py      names, durations, Service refs and YAML the two Kubernetes targets share
    run.py      start/stop a real nginx or HAProxy on loopback with a rendered config
    follow.py   keep a running one on its routes file (HAProxy's runtime API; nginx reloads)
    __main__.py `python -m dataplane nginx|haproxy`: serve and follow (`up --data-plane`)

Imports the router's loader and balance (the one definition of a cohort); nothing imports
dataplane but cli and tests (the stack runs `python -m dataplane` as a process).
"""

from __future__ import annotations

from dataplane.errors import ExportError

TARGETS = ("nginx", "haproxy", "gateway-api", "istio")

__all__ = ["TARGETS", "ExportError"]
