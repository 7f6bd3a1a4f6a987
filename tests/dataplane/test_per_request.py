"""What the exported nginx does per request beyond proxying: no file lookup. Its
`try_files` (how a request reaches the route's named location untouched) looks for a file
first; the miss is cached, so a request costs its sockets only (benchmarks/router.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from dataplane import model, nginx, run
from dataplane.errors import ExportError
from devstack import free_port
from tests.conftest import service_missing
from tests.dataplane.wire import answers, named_upstreams

ROUTES = """ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "http://127.0.0.1:{a}"}}
  b: {{url: "http://127.0.0.1:{b}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{a: 50, b: 50}}
    cohort: {{header: X-User, cookie: sessionid}}
"""


def plan(tmp_path: Path, a: int = 1, b: int = 2) -> model.Plan:
    (tmp_path / "routes.yaml").write_text(ROUTES.format(a=a, b=b))
    return model.load_plan(tmp_path / "routes.yaml")


def test_the_try_files_miss_is_cached(tmp_path: Path) -> None:
    text = nginx.render(plan(tmp_path))
    location = re.search(r"location / \{(.*?)\}", text, re.S)
    assert location is not None
    assert "open_file_cache max=" in location.group(1)
    assert "open_file_cache_errors on;" in location.group(1)


def test_nginx_looks_up_no_file_per_request(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        service_missing("strace", RuntimeError("apt-get install -y strace (`python -m devstack.apt`)"))
        return
    try:
        run.binary("nginx")
    except ExportError as exc:
        service_missing("nginx", exc)
    requests = [("/api/products/1", {"X-User": f"u{i}"}) for i in range(200)]
    with named_upstreams(("a", "b")) as ports, \
            run.start("nginx", plan(tmp_path, ports["a"], ports["b"]), port=free_port()) as server:
        worker = int(subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True,
                                    check=True).stdout.split()[0])
        counts = tmp_path / "strace.txt"
        tracer = subprocess.Popen([strace, "-c", "-f", "-e", "trace=%file", "-o", str(counts), "-p", str(worker)],
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # strace attaches
        try:
            answers(server.port, requests[:1])  # the one lookup that fills the cache, perhaps traced
            got = answers(server.port, requests)
        finally:
            tracer.terminate()
            _, err = tracer.communicate(10)
    if "Operation not permitted" in err:
        service_missing("strace attaching to nginx's worker (ptrace)", RuntimeError(err.strip()))
    assert all(status == 200 for status, _, _ in got)
    calls = sum(int(line.split()[3]) for line in counts.read_text().splitlines()
                if re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+", line) and line.split()[-1] != "total")
    assert calls <= 2, f"{calls} file lookups for {len(requests)} requests:\n{counts.read_text()}"
