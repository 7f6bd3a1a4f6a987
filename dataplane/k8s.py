"""What the two Kubernetes targets (gateway.py, istio.py) share: object names, durations,
Service references for upstreams, and the multi-document YAML they are written as."""

from __future__ import annotations

import re
from typing import Any

import yaml

from dataplane.errors import ExportError
from dataplane.model import Backend, Plan

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


def object_name(*parts: str) -> str:
    """A DNS-1123 name made of routes.yaml names (lower case, anything else becomes '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-") or "strangler"


def service(b: Backend) -> tuple[str, int]:
    """The Service an upstream becomes: named like the upstream, the port of its URL."""
    if not DNS_LABEL.match(b.name) or len(b.name) > 63:
        raise ExportError(f"upstream {b.name!r} cannot name a Kubernetes Service — fix: rename it in "
                          "routes.yaml to lower-case letters, digits and '-' (a DNS label)")
    return b.name, b.servers[0].port


def duration(seconds: float) -> str:
    """A Gateway API / Istio duration: whole seconds as `30s`, else milliseconds."""
    ms = int(round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class _Plain(yaml.SafeDumper):
    """Writes a shared value out each time: no &anchors, which some tools refuse."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(plan: Plan, target: str, docs: list[dict[str, Any]]) -> str:
    """The header as comments, then one YAML document per object."""
    head = "".join(f"# {line}\n" for line in plan.header_lines(target))
    return head + yaml.dump_all(docs, Dumper=_Plain, sort_keys=False, explicit_start=True)


def gateway_name(gateway: str) -> tuple[str, str]:
    """`NAME` or `NAMESPACE/NAME` (`--gateway`) → (namespace or "", name); refused unless both
    are Kubernetes names."""
    namespace, _, name = gateway.rpartition("/")
    for part in (name, namespace) if namespace else (name,):
        if not DNS_LABEL.fullmatch(part) or len(part) > 63:
            raise ExportError(f"--gateway {gateway!r}: {part!r} is not a Kubernetes name — fix: "
                              "lower-case letters, digits and '-', e.g. --gateway infra/public")
    return namespace, name
