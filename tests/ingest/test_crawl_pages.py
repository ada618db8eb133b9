"""The pieces of `ingest.crawl` a crawl's correctness rests on, on real markup: which links a page yields, what a
sitemap lists, and what a web page's text keeps (trafilatura's main content, or the whole page when it finds
none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.crawl import CrawlState, PageState, normalise, origin_of, page_links, sitemap_locations
from ingest.loaders.html import load_html
from ingest.loaders.webpage import load_web_page

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "docs" / "it" / "vpn-token-reset-en.html"


def test_links_are_absolute_without_fragments_and_nofollow_is_obeyed():
    page = b"""<html><head><base href="http://intra.example/it/"></head><body>
        <a href="vpn.html#steps">VPN</a><a href="/hr/leave.html">Leave</a><a href="../about">About</a>
        <a href="http://other.example/x">Other</a><a rel="nofollow" href="/logout">Log out</a>
        <a href="mailto:it@example.com">Mail</a><a>no href</a></body></html>"""
    links = page_links(page, "http://intra.example/it/index.html")
    assert links[:4] == ["http://intra.example/it/vpn.html", "http://intra.example/hr/leave.html",
                         "http://intra.example/about", "http://other.example/x"]
    assert "http://intra.example/logout" not in links
    assert page_links(b"", "http://intra.example/") == []


def test_sitemaps_and_sitemap_indexes():
    urlset = b"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
        <url><loc> http://intra.example/a.html </loc></url><url><loc>http://intra.example/b.html</loc></url></urlset>"""
    index = b"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
        <sitemap><loc>http://intra.example/sitemap-hr.xml</loc></sitemap></sitemapindex>"""
    assert sitemap_locations(urlset) == (["http://intra.example/a.html", "http://intra.example/b.html"], [])
    assert sitemap_locations(index) == ([], ["http://intra.example/sitemap-hr.xml"])
    assert sitemap_locations(b"<html>not a sitemap") == ([], [])


def test_urls_are_normalised_and_only_http_is_crawled():
    assert normalise("HTTP://Intra.Example#top") == "http://intra.example/"
    assert origin_of("https://intra.example:8443/hr/") == "https://intra.example:8443"
    with pytest.raises(ValueError, match="http"):
        origin_of("file:///etc/passwd")


INTRANET_PAGE = b"""<html><head><title>Leave | Intranet</title></head><body>
<div class="topbar"><a href="/">Home</a> <a href="/hr">HR</a> <a href="/canteen">Canteen menu</a></div>
<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies?</div>
<div class="content"><h1>Annual leave</h1><p>Full-time employees receive 20 working days of paid annual leave per
calendar year. After five years of service the entitlement rises to 23 days.</p><p>Leave is requested in LatticeHR
and approved by your manager; requests longer than ten days also need the People Team.</p></div>
<div class="sidebar"><h3>Popular pages</h3><a href="/x">Canteen menu this week</a><a href="/y">Parking</a></div>
<div class="site-footer">Copyright 2024 Northwind Lattice. All rights reserved. Imprint. Privacy.</div>
</body></html>"""


def test_main_content_drops_the_site_chrome_and_a_bare_page_falls_back_to_the_html_loader():
    main, whole = load_web_page("leave.html", INTRANET_PAGE), load_html("leave.html", INTRANET_PAGE)
    assert main.meta["extractor"] == "trafilatura" and main.title == "Annual leave"  # the page's heading, not the site's name
    for chrome in ("Canteen menu", "cookies", "Copyright", "Popular pages"):  # plain <div>s: the HTML loader keeps them
        assert chrome in whole.text and chrome not in main.text, chrome
    assert main.text.startswith("# Annual leave") and "23 days" in main.text and "People Team" in main.text
    sample = load_web_page("vpn.html", SAMPLE.read_bytes())
    assert sample.title == "How to Reset Your VPN Token" and "Lattice Authenticator" in sample.text
    # all its text in what trafilatura takes for boilerplate: read whole rather than lost
    bare = load_web_page("hotline.html", b'<html><body><div class="footer">HR hotline: 4410</div></body></html>')
    assert bare.meta["extractor"] == "html" and "HR hotline: 4410" in bare.text


def test_crawl_state_round_trips_and_a_damaged_file_names_the_fix(tmp_path):
    path = tmp_path / "crawl" / "http_intra.example.json"
    state = CrawlState("http://intra.example", {"http://intra.example/": PageState('"e1"', None, ("http://intra.example/a",))})
    state.save(path)
    assert CrawlState.load(path, "http://intra.example") == state
    path.write_text("{not json")
    with pytest.raises(ValueError, match="delete it"):
        CrawlState.load(path, "http://intra.example")
