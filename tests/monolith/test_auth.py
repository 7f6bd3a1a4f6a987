"""Login, logout and the /api/whoami/ contract (session cookie or token → identity; else 401)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_whoami_anonymous_is_401(anon: APIClient) -> None:
    response = anon.get("/api/whoami/")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_login_gives_session_and_token(anon: APIClient) -> None:
    response = anon.post("/api/auth/login/", {"username": "staff1", "password": "shop-password"},
                         format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "staff1" and body["is_staff"] is True and body["token"]
    assert "sessionid" in response.cookies
    # the session cookie alone identifies the user
    assert anon.get("/api/whoami/").json() == {"id": body["id"], "username": "staff1",
                                               "is_staff": True}
    # and so does the token, on a client without cookies
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = token_client.get("/api/whoami/")
    assert me.status_code == 200 and me.json()["id"] == body["id"]


def test_customer_is_not_staff(customer: APIClient) -> None:
    me = customer.get("/api/whoami/").json()
    assert me["username"] == "customer1" and me["is_staff"] is False


def test_bad_credentials_are_400_and_forged_token_401(anon: APIClient) -> None:
    response = anon.post("/api/auth/login/", {"username": "staff1", "password": "nope"},
                         format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Invalid username or password."]}
    assert anon.post("/api/auth/login/", {"username": "staff1"}, format="json").json() == {
        "password": ["This field is required."]}
    anon.credentials(HTTP_AUTHORIZATION="Token forged")
    assert anon.get("/api/whoami/").status_code == 401


def test_logout_ends_the_session(customer: APIClient) -> None:
    assert customer.post("/api/auth/logout/").status_code == 204
    assert customer.get("/api/whoami/").status_code == 401


def test_schema_lists_the_api(anon: APIClient) -> None:
    response = anon.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/products/", "/api/products/{id}/", "/api/categories/", "/api/whoami/"):
        assert path in paths


def test_the_openapi_schema_is_valid_with_no_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The monolith's schema is the contract a team diffs against an extracted service: it must
    validate, type every id as an integer and describe every view (the sales report too)."""
    import yaml
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    for path in ("/api/orders/{id}/", "/api/addresses/{id}/", "/api/payments/{id}/", "/api/shipments/{id}/"):
        (param,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "id"]
        assert param["schema"]["type"] == "integer", path
    report = schema["paths"]["/api/reports/sales/"]["get"]["responses"]["200"]
    assert report["content"]["application/json"]["schema"]["$ref"].endswith("/SalesReport")


def test_html_pages(anon: APIClient) -> None:
    home = anon.get("/")
    assert home.status_code == 200 and b"/products/1/" in home.content
    page = anon.get("/products/1/")
    assert page.status_code == 200 and b"<h1>" in page.content
    assert anon.get("/products/999999/").status_code == 404
    login_page = anon.get("/login/")
    assert login_page.status_code == 200 and b'name="password"' in login_page.content
