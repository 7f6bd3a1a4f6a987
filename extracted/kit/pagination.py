"""Page-number pagination with the monolith's contract (DRF's PageNumberPagination).

`?page=` (a number, or `last`) and `?page_size=` (1..100, default 20; anything else means the
default). The body is `{"count", "next", "previous", "results"}`; links are absolute URLs
built from the request's own URL with the query re-encoded in sorted order, exactly like
DRF, so a client following `next` on either side sees the same URLs. A page that does
not exist is 404 `{"detail": "Invalid page."}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib import parse

from starlette.datastructures import QueryParams

from extracted.kit.errors import NotFound

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, kw_only=True)
class Page:
    number: int
    size: int
    count: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // self.size))

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_size(params: QueryParams, default: int) -> int:
    raw = params.get("page_size")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        return default
    if size <= 0:
        return default
    return min(size, MAX_PAGE_SIZE)


def page(params: QueryParams, *, size: int, count: int) -> Page:
    """The requested page of `count` items, or 404 "Invalid page."."""
    raw = params.get("page") or "1"
    num_pages = max(1, -(-count // size))
    if raw == "last":
        return Page(number=num_pages, size=size, count=count)
    try:
        number = int(raw)
    except ValueError:
        raise NotFound("Invalid page.") from None
    if number < 1 or number > num_pages:
        raise NotFound("Invalid page.")
    return Page(number=number, size=size, count=count)


def public_url(url: str, forwarded_host: str | None) -> str:
    """The URL as the client addressed it: behind the router, `X-Forwarded-Host` names the
    host the client used (the router sets it and drops any client copy). Like Django's
    USE_X_FORWARDED_HOST in the monolith, so `next` links lead back through the router."""
    if not forwarded_host:
        return url
    scheme, _, path, query, fragment = parse.urlsplit(url)
    return parse.urlunsplit((scheme, forwarded_host.strip(), path, query, fragment))


def links(url: str, current: Page) -> tuple[str | None, str | None]:
    """(next, previous) absolute URLs for `current`, DRF-style."""
    next_url = _replace(url, current.number + 1) if current.has_next else None
    previous_url = None
    if current.has_previous:
        previous_url = _replace(url, None if current.number == 2 else current.number - 1)
    return next_url, previous_url


def _replace(url: str, number: int | None) -> str:
    scheme, netloc, path, query, fragment = parse.urlsplit(url)
    query_dict = parse.parse_qs(query, keep_blank_values=True)
    if number is None:
        query_dict.pop("page", None)
    else:
        query_dict["page"] = [str(number)]
    query = parse.urlencode(sorted(query_dict.items()), doseq=True)
    return parse.urlunsplit((scheme, netloc, path, query, fragment))
