"""Router speed, side by side with nginx and HAProxy: prints ONE JSON line.

    python benchmarks/router.py [--duration 5] [--rounds 3] [--compare] [--before TREE]

Starts one fixed upstream (uvicorn, 1 worker, small JSON), nginx (1 worker, upstream
keep-alive), HAProxy (1 thread, http-reuse) and the router (`python -m router`, 1 worker)
twice: on its default HTTP server (`router_*`) and on the other one (`--http`, reported as
`router_<other>_*`, e.g. `router_uvicorn_rps`), then runs `wrk` against direct, nginx,
HAProxy and both routers in alternation, for
`--rounds` rounds at 32 connections and at 1 connection. Medians over rounds; the ratio is
taken per round (router ÷ nginx in the same round) because the machine is noisy.
`--compare` adds the alternatives the router's design was chosen against: the router app
under granian (if installed), and a plain ASGI proxy on `httpx.AsyncClient`.

Two scenarios. "plain": access logs off on every proxy (nginx `access_log off`, router
`access_log: false`), one route, one upstream. "realistic" (`realistic_*`), as users run it:
the access log on (to a file), a route split 50/50 by a cohort cookie between two upstreams
(the same server), identity on (the whoami answer cached, a signed header per request), and
nginx with its access log on beside it for reference. `cpu_ratio_vs_nginx` is the router's
CPU per request ÷ nginx's in the same round (median over rounds): on a shared 2-core box
it is steadier than the throughput ratio, which moves with what wrk and the upstream leave.

"exported" (issue 18: `nginx_exported_*`, `haproxy_exported_*`, 32 connections): the nginx
and HAProxy configurations `strangler export` writes (dataplane.run.files: model.load_plan,
the renderer and its wrapping) for a route `/` split 50/50 by a sticky cohort (X-User
header, then the session cookie) between two upstream names on the one server. Two things
are changed so the comparison is fair, as in the plain configs: nginx's access log off, and
HAProxy `nbthread 1` (the export sets no thread count). wrk sends 1,000 cohort keys in turn
(a Lua script: half as the header, half as the cookie), so the key lookup and the hash run.
`ratio_<target>_exported_vs_plain`: CPU per request exported ÷ plain in the same round
(median over rounds; `exported_target_met` when both are ≤ 1.10); `rps_ratio_*` the same
for throughput.

`--before TREE` also runs the router of another checkout (e.g. a `git worktree` of main) in
both scenarios, alternating with this one in every round (`before_*` keys), so a change is
measured against its base under the same load.

Needs nginx, haproxy and wrk. Debian/Ubuntu: `apt-get install -y nginx haproxy wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataplane.model import load_plan  # noqa: E402
from dataplane.run import files as dataplane_files  # noqa: E402
from devstack import free_port  # noqa: E402
from router.server import DEFAULT_HTTP, HTTP_SERVERS  # noqa: E402

OTHER_HTTP = next(h for h in HTTP_SERVERS if h != DEFAULT_HTTP)

BODY = json.dumps({"id": 1, "name": "Espresso cup", "price": "4.50", "in_stock": True}).encode()
WHOAMI = json.dumps({"id": 7, "username": "bench", "is_staff": False}).encode()
SESSION = "sessionid=bench-session-0123456789abcdef"


# --- servers run by this script in subprocesses ---------------------------------------

def serve_upstream(port: int) -> None:
    import uvicorn

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    whoami = [(b"content-type", b"application/json"), (b"content-length", str(len(WHOAMI)).encode())]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        if scope["path"] == "/api/whoami/":  # the identity bridge's question (realistic)
            await send({"type": "http.response.start", "status": 200, "headers": whoami})
            await send({"type": "http.response.body", "body": WHOAMI})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop=_loop(), lifespan="off",
                access_log=False, log_level="warning")


def serve_httpx_proxy(port: int, upstream: int) -> None:
    """The straightforward design: a pure ASGI app forwarding with httpx.AsyncClient."""
    import httpx
    import uvicorn

    client: httpx.AsyncClient | None = None

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        nonlocal client
        if scope["type"] != "http":
            return
        if client is None:
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{upstream}",
                                       limits=httpx.Limits(max_keepalive_connections=64))
        url = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        req = client.build_request(scope["method"], url, headers=[(k, v) for k, v in scope["headers"] if k != b"host"])
        resp = await client.send(req, stream=True)
        await send({"type": "http.response.start", "status": resp.status_code,
                    "headers": [(k, v) for k, v in resp.headers.raw if k.lower() not in (b"connection", b"transfer-encoding")]})
        async for chunk in resp.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        await resp.aclose()

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop=_loop(), lifespan="off",
                access_log=False, log_level="warning", proxy_headers=False)


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
        return "uvloop"
    except ImportError:
        return "asyncio"


# --- the harness ------------------------------------------------------------------------

def need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        sys.exit(f"{tool} is missing: install with `apt-get install -y nginx haproxy wrk` (Debian/Ubuntu)")
    return path


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"a server exited early ({proc.args}): {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its descendants (clock ticks → seconds)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url: str, conns: int, duration: float, headers: tuple[str, ...] = (),
        script: Path | None = None) -> tuple[float, float]:
    threads = 1 if conns == 1 else 2
    extra = [arg for h in headers for arg in ("-H", h)] + (["-s", str(script)] if script else [])
    done = subprocess.run([need("wrk"), f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency",
                           *extra, url], capture_output=True, text=True, timeout=duration + 30)
    out = done.stdout
    if "Requests/sec" not in out:
        sys.exit(f"wrk failed against {url}: {out[-1000:]} {done.stderr[-1000:]}")
    if "Non-2xx" in out:  # a proxy answering errors fast is not a proxy being fast
        sys.exit(f"wrk against {url} got error answers: {out[-1000:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p50_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p50_ms


def nginx_conf(tmp: Path, name: str, port: int, up: int, *, access_log: bool) -> Path:
    home = tmp / name
    home.mkdir()
    log = f"access_log {home}/access.log;" if access_log else "access_log off;"
    conf = home / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  {log}
  client_body_temp_path {home}/body; proxy_temp_path {home}/proxy;
  fastcgi_temp_path {home}/fcgi; uwsgi_temp_path {home}/uwsgi; scgi_temp_path {home}/scgi;
  upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }}
  }}
}}
""")
    return conf


def routes_plain(tmp: Path, up: int) -> Path:
    path = tmp / "routes.yaml"
    path.write_text(f"""
ledger: {tmp}/ledger.jsonl
access_log: false
upstreams:
  app: {{url: "http://127.0.0.1:{up}", pool_size: 64}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{app: 100}}
""")
    return path


def routes_realistic(tmp: Path, up: int, name: str) -> Path:
    """Access log on, a 50/50 cohort split (two upstreams, one server), identity on."""
    path = tmp / f"routes-{name}.yaml"
    path.write_text(f"""
ledger: {tmp}/ledger-{name}.jsonl
access_log: {tmp}/access-{name}.log
upstreams:
  app: {{url: "http://127.0.0.1:{up}", pool_size: 64}}
  app_b: {{url: "http://127.0.0.1:{up}", pool_size: 64}}
identity: {{upstream: app, path: /api/whoami/, cookie: sessionid}}
routes:
  - name: products
    match: {{prefix: /api/products}}
    backends: {{app: 50, app_b: 50}}
    cohort: {{cookie: sessionid}}
    identity: true
  - name: all
    match: {{prefix: /}}
    backends: {{app: 100}}
""")
    return path


def routes_exported(tmp: Path, up: int) -> Path:
    """The exported scenario's routes: `/` split 50/50 by a sticky cohort (header, then cookie)
    between two upstream names on the one server, access log off as in the plain scenario."""
    path = tmp / "routes-exported.yaml"
    path.write_text(f"""
ledger: {tmp}/ledger-exported.jsonl
access_log: false
upstreams:
  app: {{url: "http://127.0.0.1:{up}"}}
  app_b: {{url: "http://127.0.0.1:{up}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{app: 50, app_b: 50}}
    cohort: {{header: X-User, cookie: {SESSION.split("=")[0]}}}
""")
    return path


def exported(tmp: Path, target: str, routes: Path, port: int) -> Path:
    """What `strangler export <target>` runs (dataplane.run.files, the renderer and its wrapping)
    for `routes`, in a folder of its own; returns the config to start the server with.

    Two things are changed so the comparison with the plain configs is fair, and both are
    checked to be there first: nginx's wrapping logs every request to a file (the plain
    scenario has `access_log off`; HAProxy's `log stdout` is dropped alike), and the HAProxy config sets no thread count (HAProxy then
    runs one thread per CPU; the plain one runs `nbthread 1`). Everything else is as exported.
    """
    folder = tmp / f"{target}_exported"
    folder.mkdir()
    folder.chmod(0o755)  # nginx started as root runs its worker as nobody
    rendered = dataplane_files(target, load_plan(routes), port=port, folder=folder)
    if target == "nginx":
        text, log = rendered["nginx.conf"], f"    access_log {folder}/access.jsonl strangler_json;\n"
        assert log in text, "nginx.wrap no longer logs to access.jsonl: update the benchmark"
        rendered["nginx.conf"] = text.replace(log, "    access_log off;\n")
    else:
        text, log = rendered["haproxy.cfg"], "    log stdout format raw local0 info\n"
        assert "\nglobal\n" in text and "nbthread" not in text and "maxconn" not in text and log in text, \
            "haproxy.render's global section changed: update the benchmark"
        text = text.replace(log, "")  # no request log, as the plain one
        rendered["haproxy.cfg"] = text.replace("\nglobal\n", "\nglobal\n    nbthread 1\n    maxconn 4096\n", 1)
    for name, body in rendered.items():
        (folder / name).write_text(body)
    return folder / ("nginx.conf" if target == "nginx" else "haproxy.cfg")


def cohort_script(tmp: Path, keys: int = 1000) -> Path:
    """A wrk script sending requests with `keys` different cohort keys, half as the X-User
    header and half as the session cookie (so both key paths and the hash run), cycling
    through requests formatted once in `init` (wrk's cheap way to vary requests)."""
    path = tmp / "cohort.lua"
    name = SESSION.split("=")[0]
    path.write_text(f"""
local reqs, n, i = {{}}, {keys}, 0
init = function(args)
  for k = 1, n do
    local h = {{}}
    if k % 2 == 0 then h["X-User"] = "user-" .. k else h["Cookie"] = "{name}=session-" .. k end
    reqs[k] = wrk.format("GET", "/api/products/1", h)
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
""")
    return path


def check_split(port: int, keys: int = 64) -> None:
    """The exported server answers 200 and puts cohort keys on both backends (the hash ran)."""
    import urllib.request

    seen = set()
    for k in range(keys):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/products/1", headers={"X-User": f"user-{k}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, resp.status
            seen.add(resp.headers.get("x-strangler-backend"))
    if seen != {"app", "app_b"}:
        sys.exit(f"the exported config on {port} split {keys} users as {seen}, not over app and app_b")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run granian and httpx variants")
    parser.add_argument("--before", type=Path, help="another checkout whose router runs alongside (before_*)")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-httpx-proxy", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        return serve_upstream(args.serve_upstream)
    if args.serve_httpx_proxy:
        return serve_httpx_proxy(*args.serve_httpx_proxy)
    nginx, haproxy = need("nginx"), need("haproxy")
    need("wrk")
    before = args.before.resolve() if args.before else None
    if before is not None and not (before / "router" / "__main__.py").exists():
        sys.exit(f"--before {before}: no router/ there (give the root of a checkout)")

    tmp = Path(tempfile.mkdtemp(prefix="strangler-bench-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    # Requests of the realistic scenario carry a session cookie (the cohort and identity key).
    realistic = {"router_realistic", "nginx_realistic", "before_router_realistic"}
    # Requests to the exported configs carry varied cohort keys (a wrk script), so the hash runs.
    cohorts = {"nginx_exported", "haproxy_exported"}
    script = cohort_script(tmp)

    def start(name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        ports[name] = free_port() if name not in ports else ports[name]
        procs[name] = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       env={**os.environ, **(env or {})}, start_new_session=True)
        wait_port(ports[name], procs[name])

    def router(name: str, routes: Path, *extra: str, tree: Path = ROOT) -> None:
        ports[name] = free_port()
        # The checkout's own router package first (cwd is on sys.path with -m).
        env = {"PYTHONPATH": str(tree), "STRANGLER_IDENTITY_SECRET": "bench-secret"}
        start(name, [sys.executable, "-m", "router", "--config", str(routes), "--port", str(ports[name]),
                     "--workers", "1", *extra], env=env, cwd=tree)

    try:
        up = ports["direct"] = free_port()
        start("direct", [sys.executable, __file__, "--serve-upstream", str(up)])
        for name, log in (("nginx", False), ("nginx_realistic", True)):
            ports[name] = free_port()
            start(name, [nginx, "-p", str(tmp / name), "-c", str(nginx_conf(tmp, name, ports[name], up,
                                                                            access_log=log))])
        ports["haproxy"] = free_port()
        (tmp / "haproxy.cfg").write_text(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:{ports['haproxy']}
  default_backend be
backend be
  server s1 127.0.0.1:{up}
""")
        start("haproxy", [haproxy, "-f", str(tmp / "haproxy.cfg"), "-db"])
        cohort_routes = routes_exported(tmp, up)
        for target in ("nginx", "haproxy"):
            name = f"{target}_exported"
            ports[name] = free_port()
            conf = exported(tmp, target, cohort_routes, ports[name])
            start(name, [nginx, "-p", str(conf.parent), "-c", str(conf)] if target == "nginx"
                  else [haproxy, "-f", str(conf), "-db"], cwd=conf.parent)
            check_split(ports[name])
        plain = routes_plain(tmp, up)
        router("router", plain)
        router(f"router_{OTHER_HTTP}", plain, "--http", OTHER_HTTP)
        router("router_realistic", routes_realistic(tmp, up, "router"))
        if before is not None:
            router("before_router", plain, tree=before)
            router("before_router_realistic", routes_realistic(tmp, up, "before"), tree=before)
        if args.compare:
            try:
                import granian  # noqa: F401

                ports["router_granian"] = free_port()
                start("router_granian", [sys.executable, "-m", "granian", "--interface", "asgi",
                                         "--host", "127.0.0.1", "--port", str(ports["router_granian"]),
                                         "--workers", "1", "--loop", "uvloop", "--log-level", "warning",
                                         "router.asgi:app"],
                      env={"STRANGLER_ROUTES": str(plain)})
            except ImportError:
                print("granian not installed: skipping that variant", file=sys.stderr)
            ports["httpx_proxy"] = free_port()
            start("httpx_proxy", [sys.executable, __file__, "--serve-httpx-proxy",
                                  str(ports["httpx_proxy"]), str(up)])

        names = list(ports)
        results: dict[str, dict[str, list[float]]] = {n: {"rps": [], "p50_1": [], "cpu_us": []} for n in names}
        ratios: list[float] = []
        for rnd in range(args.rounds):
            # Alternate the order too: the first of a round meets a cooler machine.
            order = names if rnd % 2 == 0 else names[::-1]
            for conns in (32, 1):
                for name in order:
                    if conns == 1 and (name in realistic or name in cohorts or name.startswith("before_")):
                        continue  # latency at one connection: the plain scenario only
                    url = f"http://127.0.0.1:{ports[name]}/api/products/1"
                    headers = (f"Cookie: {SESSION}",) if name in realistic else ()
                    cpu0 = tree_cpu_seconds(procs[name].pid) if name != "direct" else 0.0
                    rps, p50 = wrk(url, conns, args.duration, headers, script if name in cohorts else None)
                    if conns == 32:
                        results[name]["rps"].append(rps)
                        if name != "direct":
                            cpu = tree_cpu_seconds(procs[name].pid) - cpu0
                            results[name]["cpu_us"].append(cpu / max(rps * args.duration, 1) * 1e6)
                    else:
                        results[name]["p50_1"].append(p50)
                    print(f"round {rnd + 1} c={conns} {name}: {rps:.0f} req/s p50 {p50:.3f} ms",
                          file=sys.stderr, flush=True)
            ratios.append(results["router"]["rps"][-1] / results["nginx"]["rps"][-1])

        def med(name: str, key: str) -> float | None:
            values = results[name][key]
            return round(statistics.median(values), 3) if values else None

        def per_round(name: str, base: str = "nginx", key: str = "cpu_us") -> float:
            return round(statistics.median(
                a / b for a, b in zip(results[name][key], results[base][key], strict=True)), 3)

        line: dict[str, object] = {
            "benchmark": "router", "router_http": DEFAULT_HTTP,
            "router_rps": med("router", "rps"), "nginx_rps": med("nginx", "rps"),
            "haproxy_rps": med("haproxy", "rps"), "direct_rps": med("direct", "rps"),
            "ratio_vs_nginx": round(statistics.median(ratios), 3),
            "router_p50_ms_1conn": med("router", "p50_1"), "nginx_p50_ms_1conn": med("nginx", "p50_1"),
            "haproxy_p50_ms_1conn": med("haproxy", "p50_1"), "direct_p50_ms_1conn": med("direct", "p50_1"),
            "router_cpu_us_per_req": med("router", "cpu_us"), "nginx_cpu_us_per_req": med("nginx", "cpu_us"),
            "haproxy_cpu_us_per_req": med("haproxy", "cpu_us"),
            "cpu_ratio_vs_nginx": per_round("router"),
            "realistic_router_rps": med("router_realistic", "rps"),
            "realistic_router_cpu_us_per_req": med("router_realistic", "cpu_us"),
            "realistic_nginx_cpu_us_per_req": med("nginx_realistic", "cpu_us"),
            "realistic_cpu_ratio_vs_nginx": per_round("router_realistic", "nginx_realistic"),
            "rounds": args.rounds, "duration_s": args.duration,
        }
        for target in ("nginx", "haproxy"):  # issue 18: the exported configs (cohorts on) vs plain
            line[f"{target}_exported_rps"] = med(f"{target}_exported", "rps")
            line[f"{target}_exported_cpu_us_per_req"] = med(f"{target}_exported", "cpu_us")
            line[f"ratio_{target}_exported_vs_plain"] = per_round(f"{target}_exported", target)
            line[f"rps_ratio_{target}_exported_vs_plain"] = per_round(f"{target}_exported", target, "rps")
        line["exported_target_met"] = bool(line["ratio_nginx_exported_vs_plain"] <= 1.10  # type: ignore[operator]
                                           and line["ratio_haproxy_exported_vs_plain"] <= 1.10)  # type: ignore[operator]
        if before is not None:
            line["before_tree"] = str(before)
            line["before_router_cpu_us_per_req"] = med("before_router", "cpu_us")
            line["before_cpu_ratio_vs_nginx"] = per_round("before_router")
            line["before_realistic_router_cpu_us_per_req"] = med("before_router_realistic", "cpu_us")
            line["before_realistic_cpu_ratio_vs_nginx"] = per_round("before_router_realistic", "nginx_realistic")
        for extra in (f"router_{OTHER_HTTP}", "router_granian", "httpx_proxy"):
            if extra in results:
                line[f"{extra}_rps"] = med(extra, "rps")
                line[f"{extra}_ratio_vs_nginx"] = round(statistics.median(
                    a / b for a, b in zip(results[extra]["rps"], results["nginx"]["rps"], strict=True)), 3)
                line[f"{extra}_p50_ms_1conn"] = med(extra, "p50_1")
                line[f"{extra}_cpu_us_per_req"] = med(extra, "cpu_us")
        line["router_p50_overhead_ms_1conn"] = round(line["router_p50_ms_1conn"] - line["direct_p50_ms_1conn"], 3)  # type: ignore[operator]
        line["target_met"] = bool(line["ratio_vs_nginx"] >= 0.6 and line["router_p50_overhead_ms_1conn"] <= 0.5)  # type: ignore[operator]
        line["cpu_target_met"] = bool(line["cpu_ratio_vs_nginx"] <= 2.5)  # type: ignore[operator]
        print(json.dumps(line))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
