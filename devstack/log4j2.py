"""The log4j2 configuration every Java service devstack runs writes (the broker, Debezium's
connector, Kafka Connect): everything into one file, the chatty loggers at warn."""

from __future__ import annotations

from collections.abc import Sequence

_HEAD = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
"""


def config(path: str, quiet: Sequence[str] = ("org.apache.kafka",)) -> str:
    """log4j2.properties text: logs to `path`; the loggers named in `quiet` only at warn."""
    lines = [_HEAD.format(path=path)]
    for i, name in enumerate(quiet):
        lines.append(f"logger.q{i}.name = {name}\nlogger.q{i}.level = warn\n")
    return "".join(lines)


__all__ = ["config"]
