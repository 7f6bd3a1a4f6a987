"""A small real upstream for the router tests: `python -m tests.router.upstream --port P --name N`.

Endpoints (any method):
    /slow?s=2             sleeps, then answers
    /download?mb=N        streams N MiB in 64 KiB chunks (no Content-Length: chunked)
    /upload               consumes the body, answers {"received": bytes, "sha256": ...}
    /noisy                JSON with a changing timestamp and a shuffled list
    /status/<code>        answers with that status
    /api/whoami/          fake monolith: cookie sessionid=alice → user, bob → staff, else 401
    /login                echoes, and sets a session cookie
    anything else         echoes {"upstream", "method", "path", "query", "headers"}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from urllib.parse import parse_qs

import uvicorn

USERS = {b"alice": {"id": 7, "username": "alice", "is_staff": False},
         b"bob": {"id": 8, "username": "bob", "is_staff": True}}


def make_app(name: str):  # type: ignore[no-untyped-def]
    noise = random.Random(f"noise-{name}")  # /noisy's shuffles: each upstream its own, seeded
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    msg = await receive()
                    if msg["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        path = scope["path"]
        query = parse_qs(scope["query_string"].decode())

        async def reply(status: int, data: object, headers: list | None = None) -> None:
            body = json.dumps(data).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())] + (headers or [])})
            await send({"type": "http.response.body", "body": body})

        if path == "/slow":
            await asyncio.sleep(float(query.get("s", ["2"])[0]))
            return await reply(200, {"upstream": name, "slow": True})
        if path == "/download":
            mb = int(query.get("mb", ["1"])[0])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")]})
            chunk = b"x" * 65536
            for _ in range(mb * 16):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/upload":
            total = 0
            digest = hashlib.sha256()
            while True:
                msg = await receive()
                body = msg.get("body", b"")
                total += len(body)
                digest.update(body)
                if not msg.get("more_body"):
                    break
            return await reply(200, {"upstream": name, "received": total, "sha256": digest.hexdigest()})
        if path == "/noisy":
            items = [1, 2, 3, 4]
            noise.shuffle(items)
            return await reply(200, {"upstream": name, "ts": time.time(), "items": items, "stable": 1})
        if path.startswith("/status/"):
            return await reply(int(path.rsplit("/", 1)[1]), {"upstream": name})
        if path == "/api/whoami/":
            headers = dict(scope["headers"])
            cookie = headers.get(b"cookie", b"")
            for part in cookie.split(b";"):
                k, _, v = part.strip().partition(b"=")
                if k == b"sessionid" and v in USERS:
                    return await reply(200, USERS[v])
            return await reply(401, {"detail": "not logged in"})
        await reply(200, {
            "upstream": name, "method": scope["method"], "path": path,
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope["query_string"].decode(),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }, [(b"set-cookie", b"sessionid=issued-secret; HttpOnly")] if path == "/login" else [])

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="up")
    args = parser.parse_args()
    uvicorn.run(make_app(args.name), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
