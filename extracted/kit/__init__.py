"""The plumbing every extracted service shares, written once (issue 17): a service's folder
holds its models, rules and routes; everything around them is here.

    errors.py      one root, DRF-style bodies          pagination.py  DRF page-number pages, links
    identity.py    the router's signed identity header proxies.py     X-Forwarded-* from the router only
    logs.py        JSON lines with the request id       metrics.py     prometheus_client, per service prefix
    middleware.py  request id, access log, metrics, fault switch
    tracing.py     OpenTelemetry (Starlette, SQLAlchemy)
    migrations.py  Alembic from code, under a lock every copy takes (once per deploy)
    db.py          SQLAlchemy engines for SQLite (WAL) or PostgreSQL

Nothing here names a service: each passes its name, variables and scripts in.
"""
