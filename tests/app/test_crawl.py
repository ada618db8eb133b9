"""`kb crawl` end to end: the real CLI crawls a real HTTP server on 127.0.0.1 serving the sample HTML pages, into a
real index searched with `kb search`. The server counts what it was asked, so robots.txt, the host boundary, the
page budget and the conditional GETs are checked where they matter: on the wire."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.settings import get_settings
from retrieval.index import KnowledgeIndex
from retrieval.storage import writer_lock

pytestmark = pytest.mark.slow  # each crawls a real local site (http.server) end to end: several seconds on 2 cores


runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "docs"
LAST_MODIFIED = "Mon, 02 Dec 2024 09:00:00 GMT"


class Site:
    """A tiny web server: `pages` maps a path to (content type, body); it answers conditional GETs with 304
    and counts every request, and every 304, per path."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.requests: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.conditional: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                site.requests[path] += 1
                if path not in site.pages:
                    self.send_error(404)
                    return
                kind, body = site.pages[path]
                if kind == "redirect":
                    self.send_response(301)
                    self.send_header("Location", body.decode())
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"):
                    site.conditional[path] += 1
                if self.headers.get("If-None-Match") == etag:
                    site.not_modified[path] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def html(self, path: str, body: str | bytes) -> None:
        self.pages[path] = ("text/html; charset=utf-8", body.encode() if isinstance(body, str) else body)

    def page_requests(self) -> int:
        """Requests for pages, not for robots.txt or the sitemap."""
        return sum(n for p, n in self.requests.items() if p not in ("/robots.txt", "/sitemap.xml"))


@pytest.fixture
def sites():
    """The intranet site, and another host (another port) that it links to and that must never be asked."""
    intranet, elsewhere = Site(), Site()
    for s in (intranet, elsewhere):
        s.thread.start()
    elsewhere.html("/outside.html", "<html><body><h1>Outside</h1><p>Not ours.</p></body></html>")
    for name in ("vpn-token-reset-en.html", "incident-reporting-en.html"):
        intranet.html(f"/it/{name}", (SAMPLES / "it" / name).read_bytes())
    for name in ("leave-policy-intl-en.html", "hr-faq-zh.html"):
        intranet.html(f"/hr/{name}", (SAMPLES / "hr" / name).read_bytes())
    intranet.html("/private/salaries.html", "<html><body><h1>Salaries</h1><p>Board eyes only: the CEO earns "
                                            "a secret amount.</p></body></html>")
    intranet.html("/", f"""<html><head><title>Lattice Hub</title></head><body><h1>Lattice Hub</h1>
        <p>The intranet home page: policies and how-tos for every employee.</p><ul>
        <li><a href="/it/vpn-token-reset-en.html">VPN</a></li>
        <li><a href="/it/vpn-token-reset-en.html#steps">VPN steps</a></li>
        <li><a href="it/incident-reporting-en.html">Incidents</a></li>
        <li><a href="/hr/leave-policy-intl-en.html">Leave</a></li>
        <li><a href="/private/salaries.html">Salaries</a></li>
        <li><a href="{elsewhere.url}/outside.html">Partner site</a></li>
        <li><a href="/partner">Partner site, through a redirect</a></li>
        <li><a href="/old/vpn.html">VPN (old address)</a></li>
        <li><a href="mailto:it@example.com">Mail IT</a></li></ul></body></html>""")
    intranet.pages["/partner"] = ("redirect", f"{elsewhere.url}/outside.html".encode())
    intranet.pages["/old/vpn.html"] = ("redirect", b"/it/vpn-token-reset-en.html")
    intranet.pages["/robots.txt"] = ("text/plain", f"User-agent: *\nDisallow: /private/\n"
                                                   f"Sitemap: {intranet.url}/sitemap.xml\n".encode())
    set_sitemap(intranet, ["/", "/hr/hr-faq-zh.html"])
    yield intranet, elsewhere
    for s in (intranet, elsewhere):
        s.server.shutdown()
        s.server.server_close()


def set_sitemap(site: Site, paths: list[str]) -> None:
    locs = "".join(f"<url><loc>{site.url}{p}</loc></url>" for p in paths)
    site.pages["/sitemap.xml"] = ("application/xml", (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{locs}</urlset>").encode())


def crawl(url: str, *args: str) -> dict:
    result = runner.invoke(app, ["crawl", url, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def indexed(settings) -> set[str]:
    return {rec.source for rec in KnowledgeIndex.read_documents(settings.index_dir)}


def search(query: str, *args: str) -> list[dict]:
    result = runner.invoke(app, ["search", query, "--json", "--mode", "lexical", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["results"]


def test_crawl_indexes_the_site_obeys_robots_and_recrawls_only_what_changed(sites, isolated_settings):
    site, elsewhere = sites
    first = crawl(site.url + "/")
    pages = {f"{site.url}{p}" for p in ("/", "/it/vpn-token-reset-en.html", "/it/incident-reporting-en.html",
                                        "/hr/leave-policy-intl-en.html", "/hr/hr-faq-zh.html")}
    assert indexed(isolated_settings) == pages  # the sitemap-only page too; no fragment duplicate
    assert site.requests["/private/salaries.html"] == 0 and f"{site.url}/private/salaries.html" in first["disallowed"]
    assert sum(elsewhere.requests.values()) == 0  # another host is never asked, not even through a redirect
    assert site.requests["/old/vpn.html"] == 1 and site.requests["/it/vpn-token-reset-en.html"] == 1
    assert first["complete"] and first["not_modified"] == 0 and len(first["added"]) == 5

    top = search("how do I reset my VPN token")[0]
    assert top["source"] == f"{site.url}/it/vpn-token-reset-en.html"
    assert top["title"] == "How to Reset Your VPN Token"
    assert "Lattice Hub" not in top["text"]  # trafilatura kept the article, not the site's navigation
    assert all("salaries" not in r["source"] for r in search("CEO secret amount"))

    version = KnowledgeIndex.read_manifest(isolated_settings.index_dir)["updated"]
    before = Counter(site.requests)
    again = crawl(site.url + "/")
    assert again["added"] == again["updated"] == again["deleted"] == [] and again["chunks_written"] == 0
    assert again["not_modified"] == 5 and sum(site.not_modified.values()) == 5
    assert {p for p in site.conditional} == {p.removeprefix(site.url) for p in pages}
    assert all(site.requests[p] - before[p] <= 1 for p in site.requests)  # each page asked once, not twice
    assert KnowledgeIndex.read_manifest(isolated_settings.index_dir)["updated"] == version  # nothing rewritten

    del site.pages["/it/incident-reporting-en.html"]  # 404 now
    set_sitemap(site, ["/"])  # the FAQ is linked and listed nowhere any more
    site.html("/hr/leave-policy-intl-en.html", (SAMPLES / "hr" / "leave-policy-intl-en.html").read_text()
              .replace("20 working days of paid annual leave", "25 working days of paid annual leave"))
    third = crawl(site.url + "/")
    assert sorted(third["deleted"]) == [f"{site.url}/hr/hr-faq-zh.html", f"{site.url}/it/incident-reporting-en.html"]
    assert third["updated"] == [f"{site.url}/hr/leave-policy-intl-en.html"]
    assert indexed(isolated_settings) == pages - set(third["deleted"])
    assert all("incident" not in r["source"] for r in search("report a security incident"))
    assert any("25 working days" in r["text"] for r in search("annual leave working days entitlement"))


def test_max_pages_is_a_budget_and_pages_not_reached_are_kept(sites, isolated_settings):
    site, _ = sites
    result = runner.invoke(app, ["crawl", site.url + "/", "--max-pages", "2"])
    assert result.exit_code == 0, result.output
    assert "--max-pages 2" in result.output
    assert site.page_requests() == 2 and len(indexed(isolated_settings)) == 2
    full = crawl(site.url + "/")  # the whole site now; what the first crawl indexed is asked conditionally
    assert full["complete"] and full["not_modified"] == 2 and len(indexed(isolated_settings)) == 5
    short = crawl(site.url + "/", "--max-pages", "1")  # a cut-short crawl deletes nothing it did not reach
    assert not short["complete"] and short["deleted"] == [] and len(indexed(isolated_settings)) == 5


def test_access_groups_and_bad_urls(sites, isolated_settings):
    site, _ = sites
    crawl(site.url + "/", "--acl", "it", "--acl", "staff")
    assert search("reset VPN token", "--groups", "hr") == []
    assert search("reset VPN token", "--groups", "it")[0]["source"].endswith("vpn-token-reset-en.html")
    with writer_lock(isolated_settings.index_dir):  # an ingest is running: refused before any request
        before = site.page_requests()
        locked = runner.invoke(app, ["crawl", site.url + "/"])
    assert locked.exit_code == 2 and "being written by another process" in locked.output
    assert site.page_requests() == before
    bad = runner.invoke(app, ["crawl", "ftp://intranet/x"])
    assert bad.exit_code == 2 and "http(s) URL" in bad.output and "Traceback" not in bad.output


def _pdf(text: str) -> bytes:
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    page = canvas.Canvas(buf, pagesize=A4)
    page.drawString(72, 760, text)
    page.save()
    return buf.getvalue()


def test_linked_files_are_indexed_and_what_cannot_be_is_named(sites, isolated_settings, monkeypatch):
    site, _ = sites
    site.pages["/files/handbook.pdf"] = ("application/pdf", _pdf("Probation lasts six months for every new hire."))
    site.pages["/files/logo.gif"] = ("image/gif", b"GIF89a" + b"\0" * 64)
    site.pages["/files/huge.pdf"] = ("application/pdf", _pdf("Too big.") + b"\0" * 2_000_000)
    site.html("/files/", '<html><body><h1>Files</h1><p>Downloads for staff.</p><a href="handbook.pdf">Handbook</a>'
                         '<a href="logo.gif">Logo</a><a href="huge.pdf">Archive</a></body></html>')
    monkeypatch.setenv("KB_MAX_FILE_MB", "1")
    get_settings.cache_clear()
    result = runner.invoke(app, ["crawl", site.url + "/files/", "--json"])
    assert result.exit_code == 3, result.output  # as `kb ingest` with skipped files
    report = json.loads(result.stdout.strip().splitlines()[-1])
    reasons = {f["url"].rsplit("/", 1)[-1]: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"logo.gif", "huge.pdf"}
    assert "image/gif" in reasons["logo.gif"] and "1 MB limit" in reasons["huge.pdf"]
    hit = search("how long does probation last")[0]
    assert hit["source"] == f"{site.url}/files/handbook.pdf" and "six months" in hit["text"]


def test_a_crawl_deletes_only_what_crawls_from_its_start_page_indexed(sites, isolated_settings):
    site, _ = sites
    crawl(site.url + "/")
    whole_site = indexed(isolated_settings)
    site.html("/lonely.html", "<html><body><h1>Lonely</h1><p>The parking garage closes at midnight.</p></body></html>")
    set_sitemap(site, [])
    lonely = crawl(site.url + "/lonely.html")  # complete, yet it reached one page: the others are not its own
    assert lonely["complete"] and lonely["deleted"] == [] and indexed(isolated_settings) == whole_site | {
        f"{site.url}/lonely.html"}
    again = crawl(site.url + "/")  # nothing links to /lonely.html, but this start page never indexed it
    assert f"{site.url}/lonely.html" not in again["deleted"] and f"{site.url}/lonely.html" in indexed(isolated_settings)
    assert again["deleted"] == [f"{site.url}/hr/hr-faq-zh.html"]  # listed by the sitemap no more, linked nowhere
