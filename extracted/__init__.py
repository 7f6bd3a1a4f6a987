"""Services cut out of the monolith, one folder each (Starlette + SQLAlchemy, own database)."""
