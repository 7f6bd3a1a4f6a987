"""`strangler map` on a Django project that is not the shop (tests/contextmap/fixtures/minilib).

One ``--exercise`` map (GET every URL pattern on a throwaway database) shared by the tests;
the error tests start Django only as far as the error lets them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import contextmap
from tests.contextmap.conftest import FIXTURES


@pytest.fixture
def lib_map(cached_probe: None) -> dict[str, Any]:
    return contextmap.build_map("minilib.settings", exercise=True, cwd=FIXTURES)


def test_foreign_keys_many_to_many_and_generic(lib_map: dict[str, Any]) -> None:
    fks = {f["field"]: f for f in lib_map["foreign_keys"]}
    assert (fks["loans.Loan.book"]["to_table"], fks["loans.Loan.book"]["where"]) == \
        ("books_book", "minilib/loans/models.py:7")  # a string reference
    assert fks["books.Book.fans"]["through_table"] == "books_book_fans"
    assert fks["members.Note.about"]["kind"] == "generic_foreign_key"
    assert any(t["kind"] == "generic-foreign-key" for t in lib_map["tangles"])


def test_imports_absolute_relative_and_local(lib_map: dict[str, Any]) -> None:
    edges = {(e["from"], e["to"]): e for e in lib_map["imports"]}
    assert edges[("loans", "books")]["where"] == "minilib/loans/views.py:5"  # from ..books.models
    assert edges[("books", "loans")]["local"] == 1
    assert ("loans", "loans") not in edges  # from . import signals stays inside
    assert [m["module"] for m in lib_map["shared_modules"]] == ["minilib.common"]


def test_run_time_writes_transactions_and_signals(lib_map: dict[str, Any]) -> None:
    [tx] = lib_map["cross_context_transactions"]
    assert (tx["where"], tx["contexts"]) == ("minilib/loans/views.py:13", ["books", "loans", "members"])
    assert {(w["table"], w["writer"]) for w in lib_map["foreign_writes"]} == \
        {("books_book", "loans"), ("members_member", "loans")}
    assert [s["writers"] for s in lib_map["shared_writes"]] == [["loans", "members"]]
    [sig] = [s for s in lib_map["signals"] if s["cross_context"]]
    assert (sig["from_context"], sig["to_context"], sig["sent_at"]) == \
        ("loans", "members", ["minilib/loans/views.py:20"])
    assert lib_map["coupling"][0]["a"] == "books"


def test_declared_contexts_group_apps(tmp_path: Path, cached_probe: None) -> None:
    declared = tmp_path / "contexts.yaml"
    declared.write_text("contexts:\n  lending: [loans, members]\n")
    grouped = contextmap.build_map("minilib.settings", contexts=declared, cwd=FIXTURES)
    assert grouped["contexts"]["lending"]["apps"] == ["loans", "members"]
    assert not any(t["kind"] == "cross-context-signal" for t in grouped["tangles"])
    declared.write_text("contexts:\n  lending: [loans, nope]\n")
    with pytest.raises(contextmap.ContextsError, match="nope.*app labels are"):
        contextmap.build_map("minilib.settings", contexts=declared, cwd=FIXTURES)


def test_a_settings_module_that_does_not_import() -> None:
    with pytest.raises(contextmap.SettingsError, match="does not import.*PYTHONPATH"):
        contextmap.build_map("minilib.no_such_settings", cwd=FIXTURES)


def test_a_project_without_apps() -> None:
    with pytest.raises(contextmap.NoAppsError, match="installs no apps of its own"):
        contextmap.build_map("minilib.settings_noapps", cwd=FIXTURES)


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such observe file"),
    ("", "holds no request records"),
    ("not json\n", r":1: not JSON"),
    (json.dumps({"endpoint": "GET /"}) + "\n", r":1: not a contextmap request record"),
])
def test_an_observe_file_that_is_not_one(tmp_path: Path, cached_probe: None, content: str | None, message: str) -> None:
    path = tmp_path / "observe.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(contextmap.ObserveError, match=message):
        contextmap.build_map("minilib.settings", observe=path, cwd=FIXTURES)
