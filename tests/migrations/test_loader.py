"""migrations/: every shipped step file loads; each kind of mistake names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import migrations
from migrations import CHECKS, MigrationError, load_step, load_steps

SHIPPED = Path(migrations.__file__).parent


def test_the_seven_shipped_steps_load_in_order() -> None:
    steps = load_steps()
    assert [s.number for s in steps] == list(range(1, 8))
    assert [s.slug for s in steps][0] == "01-map-boundaries" and steps[-1].slug == "07-deprecate"
    for step in steps:
        assert step.why and step.tangles and step.checks and step.undo
        assert set(step.changes) == {"routes", "streams", "ownership", "code"}


def test_every_check_a_step_names_is_one_the_walkthrough_runs() -> None:
    from walkthrough import steps as live

    used = {c.name for s in load_steps() for c in s.checks}
    assert used <= set(CHECKS)
    assert set(live.ACTS) == set(live.CHECKS) == set(range(1, 8))


def _step(tmp_path: Path, name: str = "03-extract-catalog.yaml", **change: object) -> Path:
    doc = yaml.safe_load((SHIPPED / "03-extract-catalog.yaml").read_text())
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"step": 4}, "03-extract-catalog.yaml: step: 4 does not match the file name's number 3"),
    ({"why": None}, "03-extract-catalog.yaml: why: missing is not a text; write a short text under `why:`"),
    ({"tangles": ["T99"]}, "tangles: 'T99' is not in monolith/TANGLES.md; use one of T1, T2"),
    ({"tangles": "T7"}, "tangles: 'T7' is not a list of ids"),
    ({"colour": "blue"}, "colour: unknown key; a step has only step, title"),
    ({"changes": {"routes": "x", "streams": "y", "ownership": "z"}}, "changes.code: missing is not a text"),
    ({"checks": []}, "checks: missing or empty; a step is checked"),
    ({"checks": [{"name": "looks_fine"}]}, "checks[0].name: unknown check 'looks_fine'; use one of canary_promoted"),
    ({"checks": [{"name": "cdc_caught_up", "params": {"stream": "catalog"}}]},
     "checks[0].params.max_lag_ms: missing; cdc_caught_up needs `max_lag_ms`"),
    ({"checks": [{"name": "cdc_caught_up", "params": {"stream": "catalog", "max_lag_ms": "fast"}}]},
     "checks[0].params.max_lag_ms: 'fast' is not a number; give a number"),
    ({"checks": [{"name": "cdc_caught_up", "params": {"stream": "c", "max_lag_ms": 1, "lag": 2}}]},
     "checks[0].params.lag: cdc_caught_up has no parameter 'lag'; its parameters are stream, max_lag_ms"),
    ({"act": {"auto": "do it"}}, "act.yourself: missing is not a text"),
])
def test_each_mistake_says_where_and_what_to_do(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(MigrationError) as caught:
        load_step(_step(tmp_path, **change))
    assert message in str(caught.value)


def test_bad_yaml_and_bad_names_and_gaps(tmp_path: Path) -> None:
    bad = tmp_path / "01-map.yaml"
    bad.write_text("step: 1\nundo: Nothing: here\n")
    with pytest.raises(MigrationError, match=r"(?s)01-map.yaml: not valid YAML .*fix the syntax"):
        load_step(bad)
    with pytest.raises(MigrationError, match="the file name must be NN-words.yaml"):
        load_step(_step(tmp_path, "extract.yaml"))
    folder = tmp_path / "gap"
    folder.mkdir()
    for n, name in ((1, "01-a.yaml"), (3, "03-c.yaml")):
        doc = yaml.safe_load((SHIPPED / "03-extract-catalog.yaml").read_text())
        doc["step"] = n
        (folder / name).write_text(yaml.safe_dump(doc))
    with pytest.raises(MigrationError, match=r"step numbers \[1, 3\] are not 1..2"):
        load_steps(folder)
