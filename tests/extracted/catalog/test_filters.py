"""Query rules that must match the monolith's libraries exactly, checked against them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.filters import search_smart_split

from extracted.catalog.filters import search_terms
from extracted.kit.pagination import _replace

alphabet = st.sampled_from(list("ab ,'\"\\\t%_Ü"))


@settings(deadline=None)  # never fail on timing on a busy machine
@given(st.text(alphabet=alphabet, max_size=20))
def test_search_terms_split_like_drf(text: str) -> None:
    assert list(search_terms(text)) == search_smart_split(text)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["page", "b", "a", "ü", "x y"]), st.text(max_size=5), max_size=4),
       st.integers(min_value=1, max_value=5))
def test_page_links_like_drf(query: dict[str, str], number: int) -> None:
    from urllib.parse import urlencode

    from rest_framework.utils.urls import remove_query_param, replace_query_param

    url = "http://testserver/api/products/?" + urlencode(query)
    assert _replace(url, number) == replace_query_param(url, "page", number)
    assert _replace(url, None) == remove_query_param(url, "page")
