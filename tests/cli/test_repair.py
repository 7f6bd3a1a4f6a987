"""`strangler verify STREAM --repair` on the embedded SQLite stack with a real `cdc run`:
extra, missing and changed target rows are repaired while the stream runs and the source
keeps changing; `verify` output ends with the command that repairs what it found."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.cli.ownenv import Shop, run_sql

pytestmark = pytest.mark.slow


def verify(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "verify", "catalog", *args, "--streams",
                           str(shop.streams), "--recheck-wait", "0.2"], cwd=shop.root, env=shop.env(),
                          capture_output=True, text=True, timeout=120)


def test_repair_deletes_extra_rows_restores_missing_and_changed_ones_while_streaming(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    shop.create()
    run_sql(shop.monolith, *(f"INSERT INTO catalog_product VALUES ({i}, 'p{i}', {i * 100}, 1)" for i in range(3, 40)))
    shop.start("catalog")
    try:
        shop.wait_streaming("catalog")
        # damage behind the stream's back: an extra row, a missing one, a changed one
        run_sql(shop.catalog, "INSERT INTO products VALUES (900, 'ghost', 1, 0)",
                "DELETE FROM products WHERE id = 7", "UPDATE products SET price = 1 WHERE id = 12")
        found = verify(shop)
        assert found.returncode == 3, found.stderr
        assert "1 missing, 1 extra, 1 different" in found.stdout
        assert found.stdout.strip().splitlines()[-1] == "repair: strangler verify catalog catalog_product --repair"
        stop = threading.Event()

        def writes() -> None:  # the source keeps changing during the repair
            n = 0
            while not stop.is_set() and n < 200:
                n += 1
                run_sql(shop.monolith, f"UPDATE catalog_product SET price = price + 1 WHERE id = {3 + n % 30}")

        writer = threading.Thread(target=writes)
        writer.start()
        try:
            fixed = verify(shop, "catalog_product", "--repair")
        finally:
            stop.set()
            writer.join(30)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "after the repair:" in fixed.stdout and "equal" in fixed.stdout.split("after the repair:")[1]
        assert run_sql(shop.catalog, "SELECT count(*) FROM products WHERE id = 900") == [(0,)]
        assert verify(shop).returncode == 0
    finally:
        shop.stop_all()


def test_repair_needs_the_stream_running(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    shop.create()
    shop.start("catalog")
    shop.wait_streaming("catalog")
    shop.stop("catalog")
    run_sql(shop.catalog, "DELETE FROM products WHERE id = 1")
    r = verify(shop, "--repair")
    assert r.returncode == 1 and "stream catalog is stopped: start it" in " ".join(r.stderr.split())
