"""Where sign-in sends the browser next (issue 9's open redirect): only a path on this site."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from polysync.web.auth_pages import DEFAULT_NEXT, safe_next

SITE = "https://polysync.example/"


def where_a_browser_goes(location: str) -> str:
    """The host a browser lands on for a Location header: WHATWG drops tabs and line breaks
    and reads backslashes as slashes, then resolves against the page."""
    cleaned = "".join(ch for ch in location if ch not in "\t\n\r").replace("\\", "/")
    return urlsplit(urljoin(SITE, cleaned)).netloc


@pytest.mark.parametrize(
    "target",
    [
        "/\t/127.0.0.1:9911/x",  # the reproduction (%09 decoded)
        "//127.0.0.1:9911/x",
        "/\\127.0.0.1:9911/x",
        "\\\\127.0.0.1",
        "/\n/evil.example",
        "/\x00/evil.example",
        "https://evil.example/",
        "HTTPS://evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
        None,
    ],
)
def test_off_site_targets_go_home(target: str | None) -> None:
    assert safe_next(target) == DEFAULT_NEXT


@pytest.mark.parametrize(
    "target", ["/runs", "/jobs/3", "/runs?status=Failed&job_id=2", "/platforms/1#jobs"]
)
def test_local_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


@given(st.text(max_size=80))
@example("/\t/evil.example")
@example("/\\/evil.example")
@example("/%2F%2Fevil.example")
def test_a_browser_never_leaves_the_site(target: str) -> None:
    location = safe_next(target)
    assert location.startswith("/")
    assert where_a_browser_goes(location) == urlsplit(SITE).netloc
