"""Container healthcheck: exit 0 when an HTTP URL answers 2xx within a timeout, else 1.

The images are slim (no curl, no wget), so Docker's HEALTHCHECK and Compose's healthcheck
run this with the image's own Python:

    python /usr/local/bin/strangler-healthcheck http://127.0.0.1:8000/readyz
"""

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: strangler-healthcheck URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[0], timeout=TIMEOUT_S) as response:  # noqa: S310 (our own loopback URL)
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (non-2xx) is a URLError
        print(f"unhealthy: {argv[0]}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {argv[0]}: HTTP {response.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
