"""Rollout specs from YAML and from flags: Argo's step vocabulary, errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from rollout.spec import SpecError, from_json, from_yaml_doc, steps_from_flag

SPEC = """
route: products
to: catalog
reason: catalog v2
gate: {max_error_rate: 2%, max_p99: 250ms, min_requests: 30, threshold: 3}
webhooks:
  - {name: smoke, url: "http://127.0.0.1:9/check", when: pre, timeout: 2s}
steps:
  - setWeight: 10
  - analysis: {interval: 30s, checks: 2}
  - pause: {duration: 1m}
  - pause: {}
  - approval: {}
  - setWeight: 100
"""


def test_a_yaml_spec_reads_like_argos_and_survives_the_state_file() -> None:
    spec = from_yaml_doc(yaml.safe_load(SPEC))
    assert [s.label() for s in spec.steps] == ["setWeight 10%", "analysis 2×30s", "pause 60s",
                                               "pause (until promoted)", "approval (manual)", "setWeight 100%"]
    assert spec.gate.max_error_rate == 0.02 and spec.gate.max_p99_ms == 250.0 and spec.threshold == 3
    assert spec.webhooks[0].timeout == 2.0 and spec.reason == "catalog v2"
    assert from_json(spec.to_json()) == spec


def test_header_and_mirror_steps_read_like_argos_and_survive_the_state_file() -> None:
    spec = from_yaml_doc(yaml.safe_load("""
route: products
to: catalog
steps:
  - setHeaderRoute:
      name: testers
      match: [{headerName: X-Canary, headerValue: {exact: "yes"}}]
  - setHeaderRoute: {name: beta, match: [{headerName: X-Plan, headerValue: {prefix: beta-}}]}
  - setMirrorRoute:
      name: compare
      percentage: 35
      match: [{method: {exact: GET}}, {method: {exact: HEAD}}]
  - setWeight: 10
  - setHeaderRoute: {name: beta}
  - setMirrorRoute: {name: compare}
"""))
    assert [s.label() for s in spec.steps] == [
        "setHeaderRoute testers (X-Canary exact 'yes')", "setHeaderRoute beta (X-Plan prefix 'beta-')",
        "setMirrorRoute compare (35% of GET, HEAD)", "setWeight 10%", "setHeaderRoute beta (remove)",
        "setMirrorRoute compare (remove)"]
    assert spec.steps[2].methods == ("GET", "HEAD") and spec.steps[4].removes
    assert from_json(spec.to_json()) == spec


def test_flags_expand_each_weight_into_a_set_and_an_analysis() -> None:
    steps = steps_from_flag("10,approval,pause:2m,50", interval=5.0)
    assert [s.label() for s in steps] == ["setWeight 10%", "analysis 1×5s", "approval (manual)",
                                          "pause 120s", "setWeight 50%", "analysis 1×5s"]


@pytest.mark.parametrize(("text", "message"), [
    ("route: p\nto: c\nsteps: [{setWeigth: 10}]", "steps[0]: unknown step 'setWeigth'"),
    ("route: p\nto: c\nsteps: [{setHeaderRoute: {}}]", "steps[0].setHeaderRoute.name: ''"),
    ("route: p\nto: c\nsteps: [{setHeaderRoute: {name: t, match: [{headerName: X-T}]}}, {setWeight: 1}]",
     "steps[0].setHeaderRoute.match[0].headerValue: give one of exact, prefix, regex"),
    ("route: p\nto: c\nsteps: [{setHeaderRoute: {name: t, match: [{headerName: X-T, headerValue: {regex: '('}}]}}, "
     "{setWeight: 1}]", "headerValue.regex: '(' is not a regular expression"),
    ("route: p\nto: c\nsteps: [{setHeaderRoute: {name: t, match: [{headerName: A, headerValue: {exact: x}}, "
     "{headerName: B, headerValue: {exact: y}}]}}, {setWeight: 1}]", "another header is another setHeaderRoute step"),
    ("route: p\nto: c\nsteps: [{setHeaderRoute: {name: t}}, {setWeight: 1}]",
     "steps[0]: setHeaderRoute t removes a header route no earlier step set"),
    ("route: p\nto: c\nsteps: [{setMirrorRoute: {name: m, percentage: 5}}, {setWeight: 1}]",
     "a percentage without a match"),
    ("route: p\nto: c\nsteps: [{setMirrorRoute: {name: m, match: [{path: {prefix: /}}]}}, {setWeight: 1}]",
     "the mirror covers the route's whole path"),
    ("route: p\nto: c\nsteps: [{setMirrorRoute: {name: m, percentage: 0, match: [{method: {exact: GET}}]}}, "
     "{setWeight: 1}]", "percentage: 0: give a share above 0 up to 100"),
    ("route: p\nto: c\nsteps: [{setMirrorRoute: {name: m, match: [{method: {exact: GET}}]}}, "
     "{setMirrorRoute: {name: n, match: [{method: {exact: GET}}]}}, {setWeight: 1}]",
     "steps[1]: setMirrorRoute n while mirror m is set: a route has one shadow"),
    ("route: p\nto: c\nsteps: [{shadow: {}}]", "use setMirrorRoute"),
    ("route: p\nto: c\nsteps: [{setWeight: 150}]", "steps[0].setWeight: 150 is out of range 0..100"),
    ("route: p\nto: c\nsteps: [{pause: {duration: soon}}]", "steps[0].pause.duration"),
    ("route: p\nto: c\nsteps: [{pause: {}}]", "no setWeight step"),
    ("route: p\nsteps: [{setWeight: 10}]", "`to` is missing"),
    ("route: p\ncandidate: c\nsteps: [{setWeight: 10}]",
     "unknown key(s) candidate; known: route, to, reason, gate, webhooks, steps, interval (the candidate backend is `to:`)"),
    ("route: p\nto: c\nsteps: [{pause: {for: 5s}}, {setWeight: 1}]", "steps[0].pause: unknown key(s) for; known: duration"),
    ("route: p\nto: c\ngate: {max_error: 1%}\nsteps: [{setWeight: 10}]", "gate: unknown key(s) max_error"),
    ("route: p\nto: c\ngate: {threshold: 0}\nsteps: [{setWeight: 10}]", "threshold: 0 is out of range"),
    ("route: p\nto: c\nwebhooks: [{url: ftp://x}]\nsteps: [{setWeight: 10}]", "webhooks[0].url"),
    ("route: p\nto: c\nsteps: [{analysis: {interval: 10s, max_wait: 5s}}, {setWeight: 1}]", "shorter than its interval"),
])
def test_bad_specs_name_the_key_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        from_yaml_doc(yaml.safe_load(text), source="r.yaml")
    assert message in str(info.value) and str(info.value).startswith("r.yaml")


def test_flag_steps_must_increase() -> None:
    with pytest.raises(SpecError, match="weights must increase"):
        steps_from_flag("10,10", interval=1.0)
