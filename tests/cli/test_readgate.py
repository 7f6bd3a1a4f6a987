"""The read cut-over gate of `shift` and `canary` (control/readgate.py): a raise toward a backend
that reads a copy is refused while the feeding stream is not running, behind, or its last
verify found differences; lowering is never gated; --force --reason overrides, ledgered.

The stream's live figures are the metrics file a running `cdc run` writes (written here
directly, with this process as the "running" pid: deterministic, no stream needed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from control.streamcheck import save_verify
from tests.cli.ownenv import Shop

ROUTES = ("upstreams:\n  monolith: {url: 'http://127.0.0.1:8000'}\n  catalog: {url: 'http://127.0.0.1:8001'}\n"
          "routes:\n  - {name: products, match: {prefix: /api/products}, backends: {monolith: 100, catalog: 0},\n"
          "     writes: catalog}\n")


def setup(tmp_path: Path) -> Shop:
    shop = Shop(tmp_path)
    shop.create()
    (tmp_path / "routes.yaml").write_text(ROUTES)
    return shop


def stream_at(shop: Shop, stream: str, *, state: str = "streaming", lag_ms: float = 10.0) -> None:
    folder = shop.state / "cdc"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stream}.json").write_text(json.dumps(
        {"stream": stream, "state": state, "lag_ms": lag_ms, "pid": os.getpid(), "updated": time.time()}))


def shift(runner: CliRunner, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["shift", "products", *args])
    return r.exit_code, " ".join(r.output.split())


def weights(shop: Shop) -> str:
    return (shop.root / "routes.yaml").read_text()


def test_shift_toward_a_copy_is_gated_on_lag_and_verify(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    shop = setup(tmp_path)
    before = weights(shop)
    code, text = shift(runner, "--to", "catalog", "--weight", "10")
    assert code == 3 and "stream catalog is not running; start it: `strangler cdc run catalog`" in text
    stream_at(shop, "catalog", lag_ms=12_000)
    code, text = shift(runner, "--to", "catalog", "--weight", "10")
    assert code == 3 and "stream catalog is 12.0 s behind (budget 5 s)" in text
    assert shift(runner, "--to", "catalog", "--weight", "10", "--max-lag", "20")[0] == 0  # within budget
    stream_at(shop, "catalog")
    save_verify("catalog", {"stream": "catalog", "equal": False, "tables": [
        {"table": "catalog_product", "missing": [[3]], "extra": [[7], [8]], "different": []}]})
    code, text = shift(runner, "--to", "catalog", "--weight", "50")
    assert code == 3 and "found 1 missing, 2 extra and 0 different rows" in text
    assert "`strangler verify catalog --repair`" in text
    assert "catalog: 10" in weights(shop) and before != weights(shop)
    # lowering is never gated; raising the owner is not gated
    assert shift(runner, "--to", "catalog", "--weight", "5")[0] == 0
    assert shift(runner, "--to", "monolith", "--weight", "100")[0] == 0
    # --force needs a reason, and is ledgered
    code, text = shift(runner, "--to", "catalog", "--weight", "50", "--force")
    assert code == 1 and "--force needs --reason" in text
    assert shift(runner, "--to", "catalog", "--weight", "50", "--force", "--reason", "demo day")[0] == 0
    assert "catalog: 50" in weights(shop)
    entries = json.loads(runner.invoke(app, ["ledger", "--json"]).stdout)
    override = [e for e in entries if e.get("kind") == "gate-override"]
    assert len(override) == 1 and override[0]["reason"] == "demo day" and "2 extra" in override[0]["gate"]
    # a clean verify opens the gate again
    save_verify("catalog", {"stream": "catalog", "equal": True, "tables": []})
    assert shift(runner, "--to", "catalog", "--weight", "60")[0] == 0


def test_canary_toward_a_lagging_copy_is_refused_before_it_starts(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    shop = setup(tmp_path)
    stream_at(shop, "catalog", lag_ms=9_000)
    r = runner.invoke(app, ["canary", "products", "--to", "catalog", "--router", "http://127.0.0.1:9"])
    assert r.exit_code == 3 and "stream catalog is 9.0 s behind" in " ".join(r.output.split())
    # forced: the gate lets it through (and then there is no router to talk to)
    r = runner.invoke(app, ["canary", "products", "--to", "catalog", "--router", "http://127.0.0.1:9",
                            "--force", "--reason", "known lag"])
    assert r.exit_code == 1 and "no router answers" in r.output


def test_no_ownership_file_means_no_gate(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    shop = setup(tmp_path)
    shop.ownership.unlink()  # and so no `writes:` group for the route to name
    (tmp_path / "routes.yaml").write_text(ROUTES.replace(",\n     writes: catalog}", "}"))
    assert shift(runner, "--to", "catalog", "--weight", "10")[0] == 0
