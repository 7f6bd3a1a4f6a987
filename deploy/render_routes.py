"""Render the repository's routes.yaml for containers: `python deploy/render_routes.py`.

The routing table is one: `routes.yaml` at the root, which `strangler up` serves. Inside
Compose and Kubernetes only the upstream addresses differ (service names instead of
127.0.0.1, on the ports of cli/stack.py) and, on Kubernetes, the ledger moves to a writable
folder (the ConfigMap mount is read-only). This script writes both copies,
`deploy/compose/routes.yaml` and the ConfigMap in `deploy/k8s/routes-configmap.yaml`, by
editing only those values in the text, so comments and layout stay. tests/deploy fails
when a copy has drifted from what this script would write (weights aside: shifting them at
run time is the point).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_ROUTES = ROOT / "deploy" / "compose" / "routes.yaml"
K8S_ROUTES = ROOT / "deploy" / "k8s" / "routes-configmap.yaml"
K8S_LEDGER = "/app/.strangler/ledger.jsonl"  # an emptyDir: the ConfigMap mount is read-only

HEADER = (
    "# GENERATED from the repository's routes.yaml by deploy/render_routes.py: edit that file\n"
    "# and re-run the script. Only upstream addresses{ledger} differ.\n"
)


def container_ports() -> dict[str, int]:
    """Each upstream's port inside the containers: the defaults of `strangler up`."""
    from cli.stack import StackSettings

    fields = StackSettings.__dataclass_fields__
    return {name: int(fields[f"{name}_port"].default) for name in ("monolith", "catalog")}


def render(text: str, *, ports: dict[str, int], ledger: str | None = None) -> str:
    """routes.yaml text with upstream URLs pointing at services (and the ledger moved)."""
    doc = yaml.safe_load(text)
    for name, spec in (doc.get("upstreams") or {}).items():
        old = spec["url"] if isinstance(spec, dict) else spec
        if name not in ports:
            raise SystemExit(f"upstream {name!r} has no container port: add it to container_ports()")
        new = f"http://{name}:{ports[name]}"
        text, n = re.subn(rf"(?m)^(\s+url:\s*){re.escape(old)}\s*$", rf"\g<1>{new}", text, count=1)
        if n != 1:
            raise SystemExit(f"upstream {name!r}: cannot find `url: {old}` on a line of its own")
    if ledger is not None:
        text, n = re.subn(r"(?m)^ledger:.*$", f"ledger: {ledger}", text, count=1)
        if n != 1:
            text = f"ledger: {ledger}\n" + text
    lines = [line for line in text.splitlines(keepends=True)]
    while lines and lines[0].startswith("#"):  # the source's own header describes the source
        lines.pop(0)
    return HEADER.format(ledger=" and the ledger path" if ledger else "") + "".join(lines)


def configmap(routes_text: str) -> str:
    body = "".join(f"    {line}" if line.strip() else "\n" for line in routes_text.splitlines(keepends=True))
    return (
        "# The router's routes.yaml on Kubernetes, mounted as a folder at /etc/strangler.\n"
        "# Change weights here and `kubectl apply -k deploy/k8s`: every router replica reloads\n"
        "# it when the kubelet swaps the mounted copy (the admin API cannot: read-only mount).\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: strangler-routes\n"
        "data:\n"
        "  routes.yaml: |\n" + body
    )


def outputs() -> dict[Path, str]:
    source = (ROOT / "routes.yaml").read_text(encoding="utf-8")
    ports = container_ports()
    compose_note = (
        "# Mounted into the router at /etc/strangler: the admin API (`strangler shift`) edits the\n"
        "# weights in this file at run time, and the ledger lands in .strangler/ beside it.\n"
    )
    return {
        COMPOSE_ROUTES: compose_note + render(source, ports=ports),
        K8S_ROUTES: configmap(render(source, ports=ports, ledger=K8S_LEDGER)),
    }


def main() -> int:
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
