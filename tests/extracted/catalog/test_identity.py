"""The identity header: what the router signs, the service accepts; nothing else."""

from __future__ import annotations

import time

import pytest

from extracted.kit import identity
from extracted.kit.errors import NotAuthenticated, PermissionDenied

SECRET = "s3cret"


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"sub": "7", "username": "staff1", "staff": True, "exp": int(time.time()) + 3600}
    base.update(overrides)
    return base


def test_a_signed_header_gives_the_identity() -> None:
    who = identity.verify(identity.sign(claims(), SECRET), SECRET)
    assert (who.sub, who.username, who.staff) == ("7", "staff1", True)


def test_the_wire_format_is_base64url_json_dot_hex_hmac() -> None:
    value = identity.sign({"sub": "1", "username": "a", "staff": False, "exp": 1}, SECRET)
    payload, sig = value.split(".")
    assert "=" not in payload and len(sig) == 64
    assert payload == "eyJzdWIiOiIxIiwidXNlcm5hbWUiOiJhIiwic3RhZmYiOmZhbHNlLCJleHAiOjF9"


def _tampered(token: str) -> str:
    """The same token with its last signature digit changed (always a different digit)."""
    return token[:-1] + ("0" if token[-1] != "0" else "1")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "Authentication credentials were not provided."),
        ("", "Authentication credentials were not provided."),
        ("no-dot-here", "Malformed identity."),
        (identity.sign(claims(), "other-secret"), "Invalid identity signature."),
        (_tampered(identity.sign(claims(), SECRET)), "Invalid identity signature."),
        (identity.sign(claims(exp=int(time.time()) - 1), SECRET), "Identity has expired."),
        (identity.sign({"sub": "1"}, SECRET), "Malformed identity."),
        ("éé.ff", "Invalid identity signature."),
    ],
)
def test_missing_forged_expired_or_malformed_is_401(value: str | None, reason: str) -> None:
    with pytest.raises(NotAuthenticated) as err:
        identity.verify(value, SECRET)
    assert err.value.detail == reason


def test_a_payload_swapped_under_a_valid_signature_is_refused() -> None:
    staff = identity.sign(claims(staff=True), SECRET)
    customer = identity.sign(claims(staff=False), SECRET)
    forged = staff.split(".")[0] + "." + customer.split(".")[1]
    with pytest.raises(NotAuthenticated):
        identity.verify(forged, SECRET)


def test_without_a_configured_secret_nothing_verifies() -> None:
    with pytest.raises(NotAuthenticated):
        identity.verify(identity.sign(claims(), SECRET), None)


def test_staff_only_writes_refuse_a_valid_customer_with_403() -> None:
    with pytest.raises(PermissionDenied):
        identity.require_staff(identity.sign(claims(staff=False), SECRET), SECRET)
    assert identity.require_staff(identity.sign(claims(), SECRET), SECRET).staff
