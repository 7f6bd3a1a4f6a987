# syntax=docker/dockerfile:1
# One image, one build stage, one target per runnable part:
#   docker build --target router -t strangler/router:0.1.0 .   (also: monolith, catalog, cdc)
# Each target runs as the unprivileged user `strangler` (uid 10001) with the command
# `strangler up` runs (stack/model.py), listening on 0.0.0.0 instead of loopback;
# tests/deploy checks that the commands, ports and readiness paths agree.
# Targets Docker Engine 25+ (BuildKit, the default builder); validated with hadolint in CI.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the project and its dependencies in a self-contained venv ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# A C compiler for the stream's compiled per-row loops (cdc/_speedups.c, built by setup.py);
# only this stage has it: the runtime stage copies the venv. Debian's gcc and libc6-dev
# versions move with its point releases, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY monolith ./monolith
COPY router ./router
COPY cdc ./cdc
COPY extracted ./extracted
COPY migrations ./migrations
COPY cli ./cli
COPY devstack ./devstack
COPY ownership ./ownership
COPY forwarding ./forwarding
COPY telemetry ./telemetry
COPY stack ./stack
COPY loadgen ./loadgen
COPY rollout ./rollout
COPY dataplane ./dataplane
COPY walkthrough ./walkthrough
COPY workshop ./workshop
COPY contextmap ./contextmap
COPY control ./control
COPY handover ./handover
# Every dependency has wheels for amd64 and arm64 (psycopg2-binary, confluent-kafka, msgspec,
# httptools); the compiler above is for the project's own extension only.
RUN /opt/venv/bin/pip install --no-cache-dir .

# --- runtime: the venv, the data files, the healthcheck, a non-root user ------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 strangler \
 && useradd --system --uid 10001 --gid strangler --home-dir /app --no-create-home \
    --shell /usr/sbin/nologin strangler
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/app \
    STRANGLER_STREAMS=/app/streams.yaml
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/bin/strangler-healthcheck
COPY deploy/cdc_healthcheck.py /usr/local/bin/strangler-cdc-healthcheck
WORKDIR /app
COPY streams.yaml ownership.yaml ./
# The router's table: Compose mounts deploy/compose/ and Kubernetes the routes ConfigMap
# over /etc/strangler; this copy only serves a bare `docker run`.
COPY deploy/compose/routes.yaml /etc/strangler/routes.yaml
# .strangler/ is the state folder (stack.state); /etc/strangler takes routes.yaml's atomic
# rewrites and the ledger. Both writable by uid 10001 only.
RUN mkdir -p /app/.strangler \
 && chown strangler:strangler /app/.strangler /etc/strangler /etc/strangler/routes.yaml
USER 10001:10001

# --- one target per part: same image, own command, port and healthcheck ------------------
FROM runtime AS monolith
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8000/api/categories/"]
CMD ["python", "-m", "monolith", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS catalog
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8001/readyz"]
CMD ["python", "-m", "extracted.catalog", "--host", "0.0.0.0", "--port", "8001"]

# One container per stream (one replication slot, one consumer): the stream is the argument,
#   docker run strangler/cdc:0.1.0 python -m cli.main cdc run catalog
FROM runtime AS cdc
# Healthy while the stream reports progress (its metrics file, about once a second).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-cdc-healthcheck", "catalog"]
CMD ["python", "-m", "cli.main", "cdc", "run", "catalog"]

# The router is last, so a plain `docker build .` gives the front door.
FROM runtime AS router
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8080/_strangler/healthz"]
CMD ["python", "-m", "router", "--config", "/etc/strangler/routes.yaml", "--host", "0.0.0.0", "--port", "8080", "--workers", "1"]
