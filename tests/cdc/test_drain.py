"""cdc/drain.py on PostgreSQL: a marker written now is applied only after every change committed
before it, idle stream or not, and the stream's capture point is seen (SQLite: tests/cli/test_own)."""

from __future__ import annotations

import pytest

from cdc import drain
from tests.cdc.conftest import Env, sql, wait_for
from tests.cdc.test_stream_features import config, running

pytestmark = pytest.mark.postgres


def test_marker_is_applied_after_everything_committed_before_it(cdc_env: Env) -> None:
    env = cdc_env
    cfg = config(env)
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('first')")
    assert not drain.capturing(cfg)
    with running(cfg):
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM categories") == [(1,)], 30, "the copy")
        assert drain.capturing(cfg)
        idle = drain.mark(cfg)  # nothing else changes: the marker alone moves the checkpoint
        assert drain.wait_applied_to(cfg, idle, timeout=30)
        sql(env.src, "INSERT INTO catalog_category (name) SELECT 'c' || g FROM generate_series(1, 500) g")
        at = drain.mark(cfg)
        assert at > idle
        assert drain.wait_applied_to(cfg, at, timeout=30)
        # applied up to the marker: every row committed before it is in the target
        assert sql(env.tgt, "SELECT count(*) FROM categories") == [(501,)]
    later = drain.mark(cfg)  # the stream is stopped: the wait is bounded and says no
    assert not drain.wait_applied_to(cfg, later, timeout=0.3)
