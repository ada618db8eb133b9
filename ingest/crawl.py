"""Crawl one intranet site into `Document`s: same host only, robots.txt obeyed, sitemap.xml read, links followed
breadth-first up to a page budget, and conditional GETs (ETag / Last-Modified) so that a re-crawl downloads only
the pages that changed.

`crawl` does no indexing: it returns the pages fetched as Documents, the pages the server answered 304 for, the
pages that are gone (404/410), and whether it reached every page it found (`complete`), which is what the caller
needs to decide which indexed pages to delete (`CrawlResult.removed`). The validators and links of each page are
kept in a `CrawlState`, a small JSON file the caller stores beside the index; a 304 page's links come from there.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
import lxml.etree
import lxml.html

from .errors import IngestError
from .files import atomic_write
from .identity import content_hash
from .load import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, load_bytes
from .loaders.webpage import load_web_page
from .ocr import OcrOptions
from .types import Document

AGENT = "kb-crawl"  # the name robots.txt rules address
USER_AGENT = f"{AGENT}/1.0 (kb-search intranet crawler)"
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_SITEMAPS = 20  # sitemap files read per crawl (an index may list more; the rest are reached through links)
STATE_VERSION = 1

Progress = Callable[[str, int, int], None]  # (url, pages fetched, page budget)


@dataclass(frozen=True)
class PageState:
    """What a crawl remembers of one indexed page: its validators for the next conditional GET, and its links
    (a 304 carries no body to read them from)."""

    etag: str | None = None
    last_modified: str | None = None
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrawlState:
    """Per-URL validators and links of the pages crawls from one start page indexed, loaded from and saved to a
    JSON file (written atomically)."""

    origin: str
    pages: dict[str, PageState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, origin: str) -> CrawlState:
        """The state saved at `path`, or an empty one when there is none. ValueError naming the file when it is
        unreadable (delete it: the next crawl then downloads every page once)."""
        if not path.is_file():
            return cls(origin)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            pages = {url: PageState(p.get("etag"), p.get("last_modified"), tuple(p.get("links", ())))
                     for url, p in raw["pages"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"crawl state {path} is damaged ({exc}); delete it and crawl again (every page is "
                             "then downloaded once)") from exc
        return cls(origin, pages)

    def save(self, path: Path) -> None:
        """Write to `path` through a temporary file and an atomic rename: a crash leaves the old state or the
        new one, never half a file."""
        body = {"version": STATE_VERSION, "origin": self.origin,
                "pages": {url: {**asdict(p), "links": list(p.links)} for url, p in sorted(self.pages.items())}}
        atomic_write(path, json.dumps(body, ensure_ascii=False, indent=1), private=True)  # inside the index


@dataclass
class CrawlResult:
    documents: list[Document] = field(default_factory=list)  # pages downloaded (200) and read
    not_modified: list[str] = field(default_factory=list)  # pages the server answered 304 for
    gone: list[str] = field(default_factory=list)  # 404 / 410
    disallowed: list[str] = field(default_factory=list)  # found, but robots.txt forbids them
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, reason): kept as indexed, if they were
    fetched: int = 0  # requests for pages (not robots.txt or sitemaps), 304s included
    complete: bool = True  # every page found was fetched (the budget did not cut the crawl short)
    sitemap_urls: int = 0  # page URLs listed by the sitemaps
    state: CrawlState | None = None  # the validators and links to keep for the next crawl

    def removed(self, indexed: Collection[str], owned: Collection[str]) -> set[str]:
        """Which indexed page URLs should leave the index: of the site's `indexed` pages, those now gone or
        disallowed; of the pages earlier crawls from this start page indexed (`owned`), when this crawl was
        complete, those no page links to and no sitemap lists any more (a crawl of /hr/ never deletes what a
        crawl of /it/ indexed just because it did not reach it). A page that failed (a server error, a timeout,
        a file that cannot be read) keeps the version the index has."""
        reached = {d.source for d in self.documents} | set(self.not_modified) | {u for u, _ in self.failed}
        dropped = set(self.gone) | set(self.disallowed)
        out = {u for u in indexed if u in dropped}
        if self.complete:
            out |= {u for u in owned if u in set(indexed) and u not in reached}
        return out


def normalise(url: str) -> str:
    """The URL without its #fragment, with a path (`http://h` → `http://h/`): one spelling per page."""
    url = urldefrag(url.strip())[0]
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=parts.path or "/").geturl()


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL; ValueError for anything but an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL; give the site's address, e.g. http://intranet/hr/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def page_links(data: bytes, base_url: str) -> list[str]:
    """The page's <a href> targets as absolute URLs without fragments, in page order, `rel=nofollow` left out."""
    try:
        tree = lxml.html.document_fromstring(data, base_url=base_url)
    except (lxml.etree.ParserError, ValueError):  # an empty or non-HTML body has no links
        return []
    tree.make_links_absolute(base_url, resolve_base_href=True, handle_failures="discard")
    links: list[str] = []
    for a in tree.iter("a"):
        href = a.get("href")
        if href and "nofollow" not in (a.get("rel") or "").lower().split():
            links.append(normalise(href))
    return links


def sitemap_locations(data: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) listed by a sitemap or sitemap index; ([], []) for anything unparsable."""
    try:
        root = lxml.etree.fromstring(data, parser=lxml.etree.XMLParser(resolve_entities=False, no_network=True))
    except lxml.etree.XMLSyntaxError:
        return [], []
    locs = [el.text.strip() for el in root.iter("{*}loc") if el.text and el.text.strip()]
    return ([], locs) if lxml.etree.QName(root).localname == "sitemapindex" else (locs, [])


def read_robots(client: httpx.Client, origin: str) -> RobotFileParser:
    """The site's robots.txt as a parser. Missing (4xx): everything allowed; 401/403 or a server error: nothing
    allowed (the site may be unwell; better to index nothing than what it forbids)."""
    robots = RobotFileParser(origin + "/robots.txt")
    try:
        response = client.get(origin + "/robots.txt", follow_redirects=True)
    except httpx.HTTPError:
        robots.disallow_all = True
        return robots
    if response.status_code in (401, 403) or response.status_code >= 500:
        robots.disallow_all = True
    elif response.status_code >= 400:
        robots.allow_all = True
    else:
        robots.parse(response.text.splitlines())
    robots.modified()  # RobotFileParser answers False to everything until it was "read"
    return robots


def listed_pages(client: httpx.Client, origin: str, robots: RobotFileParser) -> list[str]:
    """Page URLs on this site from the sitemaps robots.txt names, or from /sitemap.xml when it names none."""
    queue = deque(robots.site_maps() or [origin + "/sitemap.xml"])
    pages: list[str] = []
    read = 0
    while queue and read < MAX_SITEMAPS:
        url = normalise(queue.popleft())
        if origin_of(url) != origin:
            continue
        read += 1
        try:
            response = client.get(url, follow_redirects=True)
        except httpx.HTTPError:
            continue
        if response.status_code != 200:
            continue
        found, nested = sitemap_locations(response.content)
        pages += [normalise(u) for u in found if _on_site(u, origin)]
        queue.extend(nested)
    return pages


def _on_site(url: str, origin: str) -> bool:
    try:
        return origin_of(url) == origin
    except ValueError:  # mailto:, javascript:, ftp: ...
        return False


def _document(url: str, kind: str, body: bytes, acl: list[str], max_bytes: int,
              ocr: OcrOptions | None = None) -> Document:
    """The page (or linked file) as a Document whose source is its URL, a linked scan or image read with `ocr`;
    IngestError naming the URL when it cannot be read."""
    name = PurePosixPath(urlsplit(url).path).name or urlsplit(url).netloc
    # The access groups are part of the hash: a re-crawl with other --acl groups updates the page.
    extra = {"acl": acl, "content_hash": content_hash(body + json.dumps(sorted(acl)).encode()),
             "fields": {"site": origin_of(url)}}
    if kind in HTML_TYPES:
        return load_bytes(name, body, url, {**extra, "format": "html"}, max_bytes, loader=load_web_page)
    return load_bytes(name, body, url, extra, max_bytes, ocr=ocr)


def crawl(start_url: str, client: httpx.Client, indexed: Collection[str], state: CrawlState, max_pages: int,
          acl: list[str] | None = None, progress: Progress | None = None,
          max_bytes: int = DEFAULT_MAX_BYTES, ocr: OcrOptions | None = None) -> CrawlResult:
    """Fetch up to `max_pages` pages of `start_url`'s site, breadth-first from it and from the sitemap's pages.

    `indexed`: the site's page URLs the index holds; only those are asked for conditionally (a page the index
    lost is downloaded again even if the server still has it unchanged). `acl`: the access groups every page
    gets (None or []: everyone). `ocr`: how linked scans and images are read (None: the defaults). ValueError
    for a start URL that is not http(s) or a budget below 1.
    """
    if max_pages < 1:
        raise ValueError(f"--max-pages must be at least 1, got {max_pages}")
    start = normalise(start_url)
    origin = origin_of(start)
    acl = sorted(set(acl or []))
    tick = progress or (lambda url, done, total: None)
    result = CrawlResult(state=CrawlState(origin))
    robots = read_robots(client, origin)
    listed = listed_pages(client, origin, robots)
    result.sitemap_urls = len(listed)
    delay = robots.crawl_delay(AGENT)
    frontier = deque(dict.fromkeys([start, *listed]))  # the start page is often in the sitemap too
    queued = set(frontier)
    known = set(indexed)
    while frontier:
        url = frontier.popleft()
        if not robots.can_fetch(AGENT, url):
            result.disallowed.append(url)
            continue
        if result.fetched >= max_pages:
            result.complete = False
            break
        if delay and result.fetched:
            time.sleep(float(delay))
        result.fetched += 1
        tick(url, result.fetched, max_pages)
        links = _visit(url, client, known, state, acl, max_bytes, result, ocr)
        for link in links:
            if link not in queued and _on_site(link, origin):
                queued.add(link)
                frontier.append(link)
    return result


def _visit(url: str, client: httpx.Client, known: set[str], state: CrawlState, acl: list[str], max_bytes: int,
           result: CrawlResult, ocr: OcrOptions | None = None) -> tuple[str, ...]:
    """Fetch one page into `result` (and its validators into `result.state`); returns the links to follow.

    Redirects are not followed by the client: the target is returned as a link, so it is checked against the
    host and robots.txt like any other, and an off-site target is never asked. A body is read only when its
    type can be indexed and it is within `max_bytes`."""
    before = state.pages.get(url) if url in known else None
    headers = {}
    if before is not None and before.etag:
        headers["If-None-Match"] = before.etag
    if before is not None and before.last_modified:
        headers["If-Modified-Since"] = before.last_modified
    if before is not None:  # kept until the page is read again: a failed fetch leaves the indexed version
        result.state.pages[url] = before
    kept_links = before.links if before is not None else ()
    try:
        with client.stream("GET", url, headers=headers) as response:
            status, kind = response.status_code, _content_type(response)
            if status == 304 and before is not None:
                result.not_modified.append(url)
                return kept_links
            if status in (404, 410):
                result.gone.append(url)
                result.state.pages.pop(url, None)
                return ()
            if response.is_redirect and "location" in response.headers:
                # followed like a link: an off-site target is left alone as an off-site link is
                return (normalise(str(response.url.join(response.headers["location"]))),)
            if status != 200:
                result.failed.append((url, f"HTTP {status}"))
                return kept_links
            name = PurePosixPath(urlsplit(url).path).name
            if kind not in HTML_TYPES and PurePosixPath(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                result.failed.append((url, f"content type {kind or 'unknown'!r} is not a page or a supported "
                                           "file; disallow it in robots.txt or leave it unlinked"))
                return ()
            body = _read_capped(response, max_bytes)
    except httpx.HTTPError as exc:
        result.failed.append((url, f"could not fetch: {exc}"))
        return kept_links
    if body is None:
        result.failed.append((url, f"over the {max_bytes / 2**20:.0f} MB limit; not downloaded (raise "
                                   "KB_MAX_FILE_MB to index it)"))
        return kept_links
    links = tuple(page_links(body, url)) if kind in HTML_TYPES else ()
    try:
        result.documents.append(_document(url, kind, body, acl, max_bytes, ocr))
    except IngestError as exc:
        result.failed.append((url, exc.reason))
        return links
    result.state.pages[url] = PageState(response.headers.get("etag"), response.headers.get("last-modified"), links)
    return links


def _content_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it is known to be over `max_bytes` (from Content-Length or while reading)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    parts: list[bytes] = []
    size = 0
    for part in response.iter_bytes():
        size += len(part)
        if size > max_bytes:
            return None
        parts.append(part)
    return b"".join(parts)
