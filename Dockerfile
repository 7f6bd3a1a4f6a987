# syntax=docker/dockerfile:1
# One image, one build stage, one target per runnable part:
#   docker build --target router .      (also: monolith, catalog, cdc)
# Every target runs as the unprivileged user `strangler` (uid 10001) with the same command
# `strangler up` runs locally; only --host (0.0.0.0 instead of loopback) differs.
# Targets: Docker Engine 25+ with BuildKit (the default builder).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: install the project and its dependencies into a self-contained venv -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY monolith ./monolith
COPY router ./router
COPY cdc ./cdc
COPY extracted ./extracted
COPY migrations ./migrations
COPY cli ./cli
COPY devstack ./devstack
# Wheels exist for every dependency on amd64 and arm64 (psycopg2-binary, confluent-kafka,
# httptools), so no compiler is needed.
RUN /opt/venv/bin/pip install --no-cache-dir .

# --- runtime: the venv, the two data files, the healthcheck, a non-root user --------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 strangler \
 && useradd --system --uid 10001 --gid strangler --home-dir /app --no-create-home \
    --shell /usr/sbin/nologin strangler
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/app
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/bin/strangler-healthcheck
WORKDIR /app
COPY routes.yaml streams.yaml ./
# .strangler/ is the state folder (SQLite files, ledger); a volume is mounted here in
# Compose and an emptyDir in Kubernetes, both writable by uid 10001.
RUN mkdir -p /app/.strangler && chown strangler:strangler /app/.strangler
USER 10001:10001

# --- one target per part: same image, own command, port and healthcheck ------------------
FROM runtime AS monolith
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8000/api/health/"]
CMD ["python", "-m", "uvicorn", "monolith.asgi:application", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS catalog
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8001/readyz"]
CMD ["python", "-m", "extracted.catalog", "--host", "0.0.0.0", "--port", "8001"]

FROM runtime AS cdc
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["strangler", "cdc", "status"]
CMD ["strangler", "cdc", "run"]

# The router is last so a plain `docker build .` gives the front door.
FROM runtime AS router
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
  CMD ["python", "/usr/local/bin/strangler-healthcheck", "http://127.0.0.1:8080/_strangler/status"]
CMD ["python", "-m", "router", "--config", "/app/routes.yaml", "--host", "0.0.0.0", "--port", "8080"]
