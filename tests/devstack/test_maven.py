"""devstack/maven.py: one fetch per cache folder, and a refusal that names what Maven Central
would not serve (a fake `mvn` stands in: no registry is asked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack import ServiceUnavailable
from devstack.maven import ENV_CACHE, fetch_jars

POM = "<project/>"
REFUSAL = ("\x1b[0m[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
           "x:x:pom:1: Could not find artifact io.debezium:debezium-connector-jdbc:jar:3.6.1.Final in central")


def _fake_mvn(tmp_path: Path, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\n" + script)
    mvn.chmod(0o755)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "cache"


def test_a_refusal_names_the_artifact_maven_could_not_find(tmp_path: Path, cache: Path) -> None:
    _fake_mvn(tmp_path, f"printf '%s\\n' '{REFUSAL}'\nexit 1\n")
    with pytest.raises(ServiceUnavailable) as info:
        fetch_jars("sink", POM, ["debezium-connector-jdbc-3.6.1.Final.jar"], "the JDBC sink")
    message = str(info.value)
    assert "Could not find artifact io.debezium:debezium-connector-jdbc:jar:3.6.1.Final" in message
    assert "missing debezium-connector-jdbc-3.6.1.Final.jar" in message and "\x1b" not in message
    assert not (cache / "sink" / ".complete").exists()  # the next run tries again


def test_jars_are_fetched_once(tmp_path: Path, cache: Path) -> None:
    # the fake copies one jar where copy-dependencies was told to, and counts its calls
    _fake_mvn(tmp_path, f"""echo x >> {tmp_path / 'calls'}
for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac; done
mkdir -p "$out" && touch "$out/a-1.jar"
""")
    first = fetch_jars("lib", POM, ["a-1.jar"], "a:a:1")
    again = fetch_jars("lib", POM, ["a-1.jar"], "a:a:1")
    assert first == again == cache / "lib" / "libs" and (first / "a-1.jar").exists()
    assert (tmp_path / "calls").read_text().count("x") == 1
