"""router/noise.py: a field is noise only while the primary disagrees with itself on it."""

from __future__ import annotations

from router.noise import NoiseWindow


def test_one_noisy_reask_does_not_hide_a_candidate_that_always_differs() -> None:
    # The case: the primary's re-ask answered 503 once; the candidate answered 500
    # every time. The primary differed from itself in 1 of 5, the candidate in 5 of 5.
    window = NoiseWindow(window=100, ratio=2.0)
    verdicts = []
    for i in range(5):
        window.noise(["status"] if i == 0 else [])
        verdicts.append(window.judge(["status"]))
    # While the primary looked as unstable as the candidate, status was noise; then not.
    assert verdicts == [([], ["status"]), ([], ["status"])] + [(["status"], [])] * 3
    summary = window.summary()
    assert summary["differing_raw"] == 5
    assert summary["differing"] == 5  # judged as of now: every one of the five is real
    assert summary["fields"] == {"status": {"raw": 5, "noise": 1, "is_noise": False}}


def test_a_field_the_primary_always_disagrees_on_stays_noise() -> None:
    window = NoiseWindow(window=10, ratio=2.0)
    for _ in range(50):
        window.noise(["ts"])
        assert window.judge(["ts"]) == ([], ["ts"])
    assert window.summary()["differing"] == 0 and window.summary()["differing_raw"] == 10


def test_noise_decays_once_the_primary_stops_disagreeing() -> None:
    window = NoiseWindow(window=10, ratio=2.0)
    for _ in range(10):  # a noisy spell on the primary: `id` differs on both sides
        window.noise(["id"])
        window.judge(["id"])
    assert window.is_noise("id")
    for _ in range(10):  # the primary is stable again, nothing differs
        window.noise([])
        window.judge([])
    assert not window.is_noise("id")  # out of the window: forgotten
    window.noise([])
    assert window.judge(["id"]) == (["id"], [])  # the candidate is held to it at once
    assert window.summary()["fields"] == {"id": {"raw": 1, "noise": 0, "is_noise": False}}


def test_the_ratio_is_what_comparable_means() -> None:
    window = NoiseWindow(window=100, ratio=2.0)
    for i in range(20):
        window.noise(["items"] if i % 4 == 0 else [])  # the primary: 1 in 4
        window.judge(["items"] if i % 2 == 0 else [])  # the candidate: 1 in 2 (twice as often)
    assert window.is_noise("items")
    window.noise([])
    window.judge(["items"])  # now a little more than twice as often
    assert not window.is_noise("items")
