"""Tracing settings: the standard OTEL_* environment variables over an optional file block.

    OTEL_TRACES_EXPORTER          otlp | zipkin | none (the first of a comma list is used)
    OTEL_EXPORTER_OTLP_ENDPOINT   collector base URL (…/v1/traces is added), or
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the full traces URL
    OTEL_EXPORTER_ZIPKIN_ENDPOINT Zipkin's /api/v2/spans URL
    OTEL_SERVICE_NAME             the service name on every span
    OTEL_TRACES_SAMPLER_ARG       share of new traces sampled, 0..1 (parents' decisions are kept)
    OTEL_SDK_DISABLED=true        off, whatever else says

Off by default: no exporter named and no endpoint set means `exporter == "none"`. An OTLP
endpoint alone turns OTLP on. Environment variables win over the file's block, as the
OpenTelemetry specification has them configure the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

EXPORTERS = ("none", "otlp", "zipkin")
DEFAULT_ENDPOINTS = {"otlp": "http://127.0.0.1:4318/v1/traces",
                     "zipkin": "http://127.0.0.1:9411/api/v2/spans"}
_KEYS = ("exporter", "endpoint", "service_name", "sample")


class TracingError(ValueError):
    """A tracing setting that cannot work; the message names the key, the value and the fix."""


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    exporter: str = "none"
    endpoint: str | None = None  # None: the exporter's default (loopback)
    service_name: str = "strangler"
    sample: float = 1.0

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise TracingError(f"tracing.exporter: {self.exporter!r} is not one of "
                               f"{', '.join(EXPORTERS)}; use otlp for a collector, zipkin for Zipkin")
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise TracingError(f"tracing.endpoint: {self.endpoint!r} is not an http(s) URL; "
                                   "give one like http://127.0.0.1:9411/api/v2/spans")
        if not self.service_name or not self.service_name.strip():
            raise TracingError("tracing.service_name: empty; name the service its spans come from")
        if isinstance(self.sample, bool) or not isinstance(self.sample, int | float) or \
                not 0.0 <= self.sample <= 1.0:
            raise TracingError(f"tracing.sample: {self.sample!r} is not a share between 0 and 1 "
                               "(1 samples every new trace)")

    @property
    def enabled(self) -> bool:
        return self.exporter != "none"

    @property
    def url(self) -> str:
        """Where spans are sent."""
        return self.endpoint or DEFAULT_ENDPOINTS.get(self.exporter, "")

    @classmethod
    def parse(cls, block: Any, where: str = "tracing") -> TracingSettings:
        """A file's ``tracing:`` mapping (routes.yaml), checked whole."""
        if block is None:
            return cls()
        if not isinstance(block, Mapping):
            raise TracingError(f"{where}: expected a mapping with {', '.join(_KEYS)}, "
                               f"got {type(block).__name__}")
        unknown = sorted(set(block) - set(_KEYS))
        if unknown:
            raise TracingError(f"{where}.{unknown[0]}: unknown key; known keys are {', '.join(_KEYS)}")
        values = dict(block)
        if "endpoint" in values and values["endpoint"] is not None:
            values["endpoint"] = str(values["endpoint"])
        try:
            return cls(**values)
        except TracingError as exc:
            raise TracingError(str(exc).replace("tracing.", f"{where}.", 1)) from None
        except TypeError as exc:  # a value of the wrong kind (a list for the exporter…)
            raise TracingError(f"{where}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 defaults: TracingSettings | None = None,
                 service_name: str | None = None) -> TracingSettings:
        """`defaults` (a file's block, or off) with the OTEL_* variables applied over them;
        `service_name` is the part's own name, used when neither names one."""
        env = os.environ if environ is None else environ
        base = defaults or cls()
        if service_name and base.service_name == cls.service_name:
            base = replace(base, service_name=service_name)
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return replace(base, exporter="none")
        changes: dict[str, Any] = {}
        named = env.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
        traces_url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        otlp_base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        zipkin_url = env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "").strip()
        if named:
            if named not in EXPORTERS:
                raise TracingError(f"OTEL_TRACES_EXPORTER: {named!r} is not one of "
                                   f"{', '.join(EXPORTERS)} (this project ships those exporters)")
            changes["exporter"] = named
        elif (traces_url or otlp_base) and base.exporter == "none":
            changes["exporter"] = "otlp"
        exporter = changes.get("exporter", base.exporter)
        if exporter == "otlp" and (traces_url or otlp_base):
            changes["endpoint"] = traces_url or otlp_base.rstrip("/") + "/v1/traces"
        elif exporter == "zipkin" and zipkin_url:
            changes["endpoint"] = zipkin_url
        elif exporter != base.exporter:
            changes["endpoint"] = None  # the file's endpoint was for another exporter
        if env.get("OTEL_SERVICE_NAME", "").strip():
            changes["service_name"] = env["OTEL_SERVICE_NAME"].strip()
        if env.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
            raw = env["OTEL_TRACES_SAMPLER_ARG"].strip()
            try:
                changes["sample"] = float(raw)
            except ValueError:
                raise TracingError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number between "
                                   "0 and 1") from None
        try:
            return replace(base, **changes)
        except TracingError as exc:
            raise TracingError(f"{exc} (from the OTEL_* environment)") from None
