"""Render the repository's routes.yaml for containers: `python deploy/render_routes.py`.

The routing table is one: `routes.yaml` at the root, which `strangler up` serves. Inside
Compose and Kubernetes only the upstream addresses differ (service names instead of
127.0.0.1; the ports stay, as the containers listen where `strangler up` does) and, on Kubernetes, the ledger moves to a writable
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
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_ROUTES = ROOT / "deploy" / "compose" / "routes.yaml"
COMPOSE_OWNERSHIP = ROOT / "deploy" / "compose" / "ownership.yaml"
K8S_ROUTES = ROOT / "deploy" / "k8s" / "routes-configmap.yaml"
K8S_LEDGER = "/app/.strangler/ledger.jsonl"  # an emptyDir: the ConfigMap mount is read-only
LOOPBACK = ("127.0.0.1", "localhost")

HEADER = (
    "# GENERATED from the repository's routes.yaml by deploy/render_routes.py: edit that file\n"
    "# and re-run the script. Only upstream addresses{ledger} differ.\n"
)


def render(text: str, *, ledger: str | None = None) -> str:
    """routes.yaml text with each loopback upstream URL naming its service (and the ledger moved).

    The upstream's name is the service's name, and the port stays: the containers listen on
    the ports `strangler up` uses, which it takes from these URLs.
    """
    doc = yaml.safe_load(text)
    for name, spec in (doc.get("upstreams") or {}).items():
        old = str(spec["url"] if isinstance(spec, dict) else spec)
        parts = urlsplit(old)
        if parts.hostname not in LOOPBACK or parts.port is None:
            raise SystemExit(f"upstream {name!r}: {old} is not a loopback URL with a port; "
                             "containers cannot reach it by service name")
        new = f"{parts.scheme}://{name}:{parts.port}{parts.path}"
        text, n = re.subn(rf"(?m)^(\s+url:[ \t]*){re.escape(old)}[ \t]*$", rf"\g<1>{new}", text, count=1)
        if n != 1:
            raise SystemExit(f"upstream {name!r}: cannot find `url: {old}` on a line of its own")
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):  # the source's own header describes the source
        lines.pop(0)
    text = "".join(lines)
    if ledger is not None:
        text, n = re.subn(r"(?m)^ledger:.*$", f"ledger: {ledger}", text, count=1)
        if n != 1:
            text = f"ledger: {ledger}\n" + text
    return HEADER.format(ledger=" and the ledger path" if ledger else "") + text


def _block(text: str) -> str:
    return "".join(f"    {line}" if line.strip() else "\n" for line in text.splitlines(keepends=True))


def configmap(routes_text: str, ownership_text: str) -> str:
    return (
        "# The router's routes.yaml on Kubernetes, mounted as a folder at /etc/strangler.\n"
        "# Change weights here and `kubectl apply -k deploy/k8s`: every router replica reloads\n"
        "# it when the kubelet swaps the mounted copy (the admin API cannot: read-only mount).\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: strangler-routes\n"
        "data:\n"
        "  routes.yaml: |\n" + _block(routes_text)
        + "  # who may write each synced table (`strangler own` flips it); the CDC pods mount it too\n"
        "  ownership.yaml: |\n" + _block(ownership_text)
    )


def outputs() -> dict[Path, str]:
    source = (ROOT / "routes.yaml").read_text(encoding="utf-8")
    owners = (ROOT / "ownership.yaml").read_text(encoding="utf-8")
    compose_note = (
        "# Mounted into the router at /etc/strangler: the admin API (`strangler shift`) edits the\n"
        "# weights in this file at run time, and the ledger lands in .strangler/ beside it.\n"
    )
    return {
        COMPOSE_ROUTES: compose_note + render(source),
        COMPOSE_OWNERSHIP: owners,
        K8S_ROUTES: configmap(render(source, ledger=K8S_LEDGER), owners),
    }


def main() -> int:
    for path, text in outputs().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
