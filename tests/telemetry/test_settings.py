"""telemetry/settings.py: OTEL_* over the routes.yaml block, off by default, nonsense refused."""

from __future__ import annotations

import pytest

from router.config import parse_config
from router.errors import ConfigError
from telemetry import TracingError, TracingSettings

ROUTES = """upstreams: {a: {url: "http://127.0.0.1:1"}}
routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]
"""


def test_off_by_default_in_the_file_and_the_environment() -> None:
    assert not parse_config(ROUTES).tracing.enabled
    assert TracingSettings.from_env({}).exporter == "none"
    assert not TracingSettings.from_env({"OTEL_SERVICE_NAME": "x"}).enabled


def test_the_file_block_is_read_and_env_wins() -> None:
    block = parse_config(ROUTES + "tracing: {exporter: zipkin, sample: 0.25, service_name: edge}\n").tracing
    assert (block.exporter, block.sample, block.service_name) == ("zipkin", 0.25, "edge")
    assert block.url == "http://127.0.0.1:9411/api/v2/spans"
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318/",
           "OTEL_SERVICE_NAME": "router-1", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    s = TracingSettings.from_env(env, defaults=block)
    assert (s.exporter, s.url, s.service_name, s.sample) == ("otlp", "http://col:4318/v1/traces", "router-1", 0.5)
    assert TracingSettings.from_env({"OTEL_SDK_DISABLED": "true"}, defaults=block).exporter == "none"
    assert TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "none"}, defaults=block).exporter == "none"


def test_an_otlp_endpoint_alone_turns_otlp_on_and_the_traces_url_wins() -> None:
    s = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert (s.exporter, s.url) == ("otlp", "http://c:4318/v1/traces")
    s = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"})
    assert s.url == "http://t:1/x"
    z = TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "zipkin",
                                  "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://z:9411/api/v2/spans"})
    assert (z.exporter, z.url) == ("zipkin", "http://z:9411/api/v2/spans")


def test_a_part_names_itself_unless_told_otherwise() -> None:
    assert TracingSettings.from_env({}, service_name="catalog").service_name == "catalog"
    assert TracingSettings.from_env({"OTEL_SERVICE_NAME": "c2"}, service_name="catalog").service_name == "c2"


@pytest.mark.parametrize(("block", "where"), [
    ("{exporter: jaeger}", "tracing.exporter"),
    ("{exporter: zipkin, endpoint: 'ftp://x'}", "tracing.endpoint"),
    ("{sample: 2}", "tracing.sample"),
    ("{exporter: zipkin, colour: blue}", "colour"),
    ("[zipkin]", "tracing"),
])
def test_the_file_block_refuses_nonsense_naming_the_key(block: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(ROUTES + f"tracing: {block}\n")
    assert where in str(err.value) and ":3:" in str(err.value)


@pytest.mark.parametrize("env", [{"OTEL_TRACES_EXPORTER": "jaeger"},
                                 {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "nope"},
                                 {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER_ARG": "half"},
                                 {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER_ARG": "-1"}])
def test_the_environment_refuses_nonsense_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(TracingError) as err:
        TracingSettings.from_env(env)
    assert "OTEL" in str(err.value) or "environment" in str(err.value)


def test_each_exporter_name_builds_its_exporter_at_the_url() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from telemetry.provider import make_exporter
    from telemetry.zipkin import ZipkinJSONExporter

    otlp = make_exporter(TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}))
    assert isinstance(otlp, OTLPSpanExporter) and otlp._endpoint == "http://c:4318/v1/traces"
    zipkin = make_exporter(TracingSettings(exporter="zipkin"))
    assert isinstance(zipkin, ZipkinJSONExporter) and zipkin.endpoint.endswith(":9411/api/v2/spans")
