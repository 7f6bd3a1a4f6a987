-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
-- The monolith's database is POSTGRES_DB; each extracted service gets its own database,
-- as it would on a real migration (the point of extracting it is owning its data).
CREATE DATABASE catalog;
