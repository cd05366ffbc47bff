"""Text cleaning: HTML, entities, Unicode forms, control characters, whitespace."""

from __future__ import annotations

import pytest

from prodcat.streams.text import clean_text, clean_url, scalar_text, truncate


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Red   Shoe \n", "Red Shoe"),
        ("<p>Wash <strong>Care</strong><br />Machine wash</p>", "Wash Care Machine wash"),
        ("<ul><li>One</li><li>Two</li></ul>", "One Two"),
        ("Fish &amp; Chips &lt;3", "Fish & Chips <3"),
        ("AT&T R&D", "AT&T R&D"),
        ("a < b and c > d", "a < b and c > d"),
        ("<!-- note -->Text<script>alert(1)</script><style>p{}</style>", "Text"),
        ("Wo\u200bmen\u00ad's", "Women's"),
        ("tab\tnew\x00line\x07", "tab new line"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("e\u0301", "\u00e9"),  # NFC composes
        ("\ufeff\u00a0 \u3000", ""),
        ("&lt;b&gt;escaped&lt;/b&gt;", "escaped"),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_nfkc_for_titles_only() -> None:
    assert clean_text("\uff33\uff48\uff4f\uff45 \ufb01t x²", compat=True) == "Shoe fit x2"
    assert (
        clean_text("\uff33\uff48\uff4f\uff45 \ufb01t x²") == "\uff33\uff48\uff4f\uff45 \ufb01t x²"
    )


def test_deeply_escaped_entities_stay_inert() -> None:
    once = clean_text("&" + "amp;" * 10 + "lt;b&gt;")
    assert clean_text(once) == once
    assert "<b>" not in once


def test_long_text_is_linear() -> None:
    text = "<script " * 100_000 + "&amp;" * 100_000
    assert len(clean_text(text)) < len(text)


def test_truncate() -> None:
    assert truncate("abc def", 4) == "abc"
    assert truncate("abc", 10) == "abc"


def test_clean_url() -> None:
    assert clean_url(" http://x.example/a.jpg ") == "http://x.example/a.jpg"
    assert clean_url("http://x.example/a b.jpg") is None
    assert clean_url("") is None
    assert clean_url(5) is None
    assert clean_url("http://x/" + "a" * 3000) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (5, "5"),
        (5.0, "5"),
        (0.5, "0.5"),
        (float("nan"), None),
        (10**100, None),
        (None, None),
        ([1], None),
        ({}, None),
    ],
)
def test_scalar_text(value: object, expected: str | None) -> None:
    assert scalar_text(value) == expected
