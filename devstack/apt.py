"""Debian packages the suite needs beside Python (a browser, Prometheus), installed by `make test`.

    python -m devstack.apt            install what is missing (as root, with apt-get), else
                                      say what is missing and the command that installs it
    python -m devstack.apt --check    only say what is missing (exit 1 if anything is)

Tests that need one of these call `require(binary)`: it returns the binary's path, or raises
ServiceUnavailable naming the package and the command, so CI fails saying what is missing
instead of skipping. Each entry says who needs it; add yours to PACKAGES.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from devstack.errors import ServiceUnavailable


@dataclass(frozen=True)
class Package:
    name: str  # Debian's package
    binaries: tuple[str, ...]  # what it puts on PATH (any found: installed)
    why: str  # who needs it


PACKAGES: tuple[Package, ...] = (
    Package("openjdk-17-jre-headless", ("java",), "Zipkin (devstack/zipkin.py) for the traces "
            "test, like the Kafka broker and Debezium"),
    Package("maven", ("mvn",), "fetches Zipkin's exec jar (and Kafka's jars) from Maven Central once"),
    Package("prometheus", ("prometheus", "promtool"),
            "deploy/prometheus rules: promtool check/test rules, and a real Prometheus scraping the stack"),
    Package("chromium", ("chromium",), "the dashboard's browser test (tests/router/test_ui_browser.py)"),
    Package("chromium-driver", ("chromedriver",), "Selenium drives chromium with it (the same test)"),
    Package("redis-server", ("redis-server",), "router replicas sharing rate limits "
            "(rate_limit_store; tests/router/test_ratelimit_replicas.py)"),
    Package("graphviz", ("dot",), "strangler map --svg draws the context map (tests/contextmap)"),
    Package("nginx", ("nginx",), "strangler export nginx: the exported config run for real "
            "(tests/dataplane/test_same_backend.py)"),
    Package("wrk", ("wrk",), "load through a running nginx/HAProxy while dataplane/follow.py shifts weights "
            "(tests/dataplane/test_follow.py) and the router benchmark"),
    Package("strace", ("strace",), "counts the exported nginx's syscalls per request "
            "(tests/dataplane/test_per_request.py)"),
    Package("haproxy", ("haproxy",), "strangler export haproxy: the exported config and its Lua hash run for "
            "real (the same test; Debian's is built with Lua)"),
)


def _find(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")


def missing(packages: tuple[Package, ...] = PACKAGES) -> list[Package]:
    return [p for p in packages if not any(_find(b) for b in p.binaries)]


def install_command(packages: list[Package]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(p.name for p in packages)


def require(binary: str) -> str:
    """The path of `binary`, or ServiceUnavailable saying which package brings it."""
    found = _find(binary)
    if found:
        return found
    owners = [p for p in PACKAGES if binary in p.binaries]
    hint = f"install it: {install_command(owners)} (or run `make test`, which does)" if owners else \
        "install it and put it on PATH"
    raise ServiceUnavailable(f"{binary} is not installed; {hint}")


def install(packages: list[Package]) -> None:
    """apt-get install `packages` (root only); ServiceUnavailable with the command otherwise."""
    if not packages:
        return
    command = install_command(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceUnavailable(f"missing Debian packages for the suite: run as root: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *(p.name for p in packages)]
    if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return
    # the package lists may be stale or absent on a fresh machine: refresh once, then retry
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
    if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        raise ServiceUnavailable(f"apt-get could not install the suite's packages; try by hand: {command}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devstack.apt", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report what is missing")
    args = ap.parse_args(argv)
    todo = missing()
    for p in todo:
        print(f"devstack.apt: {p.name} is missing ({p.why})", file=sys.stderr)
    if not todo:
        return 0
    if args.check:
        print(f"devstack.apt: install with: {install_command(todo)}", file=sys.stderr)
        return 1
    try:
        install(todo)
    except ServiceUnavailable as exc:
        print(f"devstack.apt: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
