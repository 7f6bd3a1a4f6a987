"""Sinks apply events to a target database; :mod:`cdc.sinks.sqlalchemy` is the one we have.

A sink is used as: ``begin()``, ``write(events)`` any number of times (bounded batches, one
open target transaction), then ``commit()`` at a source-transaction boundary, which stores
the positions in the same transaction and returns the stream position now durable.
"""
