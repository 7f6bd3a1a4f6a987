"""Jars from Maven Central, fetched once with Maven into the cache folder: for every Java
service devstack runs (the Kafka broker, Debezium's connector, Kafka Connect).

`fetch_jars(name, pom, wanted, what)` writes `pom` (a ``<packaging>pom</packaging>`` project
whose dependencies are the runtime) into ``<cache>/<name>/`` and copies its runtime
dependencies into ``libs/`` there; a ``.complete`` file marks a finished fetch, so later runs
only read the folder. Several test sessions may start at once: one fetches under a file lock,
the others wait for it. A refusal names the artifacts Maven could not get.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devstack.errors import ServiceUnavailable

ENV_CACHE = "STRANGLER_CACHE_DIR"
FETCH_TIMEOUT = 900.0


def cache_dir() -> Path:
    """Where fetched jars live between runs (``$STRANGLER_CACHE_DIR`` or ~/.cache/strangler)."""
    root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "strangler")
    return Path(root)


def _refused(output: str) -> str:
    """What Maven could not get, from its own words (the coordinates it names)."""
    output = re.sub(r"\x1b\[[0-9;]*m", "", output)  # Maven colours its words even in batch mode
    lines = [line.removeprefix("[ERROR] ").strip() for line in output.splitlines()
             if "Could not find artifact" in line or "could not be resolved" in line
             or "Failed to collect dependencies" in line or "Could not resolve dependencies" in line]
    return lines[0] if lines else output.strip()[-1500:]


def fetch_jars(name: str, pom: str, wanted: Sequence[str], what: str, *, instead: str = "") -> Path:
    """The folder of `pom`'s runtime jars under ``<cache>/<name>/libs``, fetched on first use.

    `wanted` are jar file names that must be among them (else the fetch counts as failed);
    `what` names the artifacts in messages ("org.apache.kafka:kafka_2.13:4.1.1"), `instead`
    says what a user may do rather than fetch ("set STRANGLER_KAFKA_BOOTSTRAP …").
    """
    folder = cache_dir() / name
    libs = folder / "libs"
    done = folder / ".complete"
    if done.exists():
        return libs
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise ServiceUnavailable(
                f"Maven was not found: it fetches {what} from Maven Central once "
                "(Debian/Ubuntu: `apt-get install maven`)." + (f" Or {instead}." if instead else "")
            )
        (folder / "pom.xml").write_text(pom)
        staging = folder / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(folder / "pom.xml"), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
            capture_output=True, text=True, check=False, timeout=FETCH_TIMEOUT,
        )
        missing = [jar for jar in wanted if not (staging / jar).exists()]
        if proc.returncode != 0 or missing:
            output = proc.stdout + proc.stderr
            raise ServiceUnavailable(
                f"Maven could not fetch {what} (exit {proc.returncode}"
                + (f"; missing {', '.join(missing)}" if missing else "") + f"): {_refused(output)}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        done.write_text("\n".join(wanted) + "\n")
    return libs


__all__ = ["ENV_CACHE", "cache_dir", "fetch_jars"]
