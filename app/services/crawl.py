"""`kb crawl URL`: keep an index in line with one intranet site, as `kb ingest` keeps it in line with folders.

The pages come from `ingest.crawl` (same host, robots.txt, sitemap, breadth-first, conditional GETs) and go into
the index through `Library.put`, the same lock, chunking, embedding and atomic publish as a file sync. Pages gone
from the site (404/410, or, after a crawl that reached every page, linked and listed nowhere) are deleted. The
validators and links of each page are kept in `<index>/crawl/<start URL>-<hash>.json`, one file per start page
(what a crawl of /hr/ may delete is what crawls of /hr/ indexed), written after the index is published:
a crash in between costs one full download of the site, never a page the index lacks but the state calls
unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingest.crawl import USER_AGENT, CrawlResult, CrawlState, crawl, normalise, origin_of
from ingest.crawl import Progress as CrawlProgress

from .library import IngestReport, Library, Progress

STATE_FOLDER = "crawl"


@dataclass(frozen=True)
class CrawlReport:
    """What a crawl did to the index (`index`, the report `kb ingest` prints too) and what it saw on the site."""

    site: str
    index: IngestReport
    fetched: int  # page requests, 304s included
    not_modified: int  # 304 answers: pages the server said were unchanged, not downloaded
    gone: list[str]  # 404 / 410
    disallowed: list[str]  # forbidden by robots.txt
    failed: list[tuple[str, str]]  # (url, reason): the index keeps what it had of them
    complete: bool  # False when --max-pages stopped the crawl with pages left to fetch
    sitemap_urls: int

    @property
    def exit_code(self) -> int:
        """0, or 3 (as `kb ingest` with skipped files) when some pages could not be fetched or read."""
        return 3 if self.failed or self.index.skipped else 0

    def to_dict(self) -> dict:
        return {"site": self.site, **self.index.to_dict(), "fetched": self.fetched,
                "not_modified": self.not_modified, "gone": self.gone, "disallowed": self.disallowed,
                "failed": [{"url": u, "reason": r} for u, r in self.failed], "complete": self.complete,
                "sitemap_urls": self.sitemap_urls, "exit_code": self.exit_code}


def state_path(index_dir: Path, start: str) -> Path:
    """`<index>/crawl/<start URL, readable>-<hash>.json`: one state file per start page, beside the index's
    versions."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", start).strip("_")[:80]
    return Path(index_dir) / STATE_FOLDER / f"{readable}-{hashlib.sha256(start.encode()).hexdigest()[:8]}.json"


def site_sources(library: Library, origin: str) -> set[str]:
    """The URLs of `origin`'s pages the live version of the library's index holds."""
    return {rec.source for rec in library.opener.read_documents(Path(library.index_dir))
            if rec.source == origin or rec.source.startswith(origin + "/")}


def crawl_site(url: str, library: Library, max_pages: int = 200, acl: Sequence[str] = (),
               client: httpx.Client | None = None, on_page: CrawlProgress | None = None,
               progress: Progress | None = None, timeout_s: float = 30.0) -> CrawlReport:
    """Crawl `url`'s site (at most `max_pages` page requests) into `library`'s index and report what changed.

    Raises ValueError for a URL that is not http(s) or a budget below 1, IndexLocked when another process is
    writing the index, IndexMismatch when it was built with another embedder. `client`: the HTTP client to use
    (None: one with a `kb-crawl` user agent and `timeout_s`; a client given must not follow redirects)."""
    start = normalise(url)
    origin = origin_of(start)
    with library.opener.writing(Path(library.index_dir)):  # fail before the crawl, not after it, while an ingest runs
        pass
    where = state_path(library.index_dir, start)
    state = CrawlState.load(where, origin)
    indexed = site_sources(library, origin)
    own = client is None
    # Redirects are not followed by the client: `crawl` checks each target against the host and robots.txt.
    http = client if client is not None else httpx.Client(headers={"User-Agent": USER_AGENT}, timeout=timeout_s)
    try:
        result: CrawlResult = crawl(start, http, indexed, state, max_pages, list(acl), on_page,
                                    library.options.max_bytes, library.options.ocr)
    finally:
        if own:
            http.close()
    report = library.put(result.documents, delete=result.removed(indexed, owned=set(state.pages)),
                         progress=progress)
    if result.state is not None:
        # Pages this crawl did not reach (cut short by --max-pages) keep what earlier crawls knew of them. Only
        # pages the index now holds keep validators: a 304 for a page it lacks would lose that page for good.
        held = site_sources(library, origin)
        pages = {**state.pages, **result.state.pages}
        CrawlState(origin, {u: p for u, p in pages.items() if u in held}).save(where)
    return CrawlReport(site=origin, index=report, fetched=result.fetched, not_modified=len(result.not_modified),
                       gone=result.gone, disallowed=result.disallowed, failed=result.failed,
                       complete=result.complete, sitemap_urls=result.sitemap_urls)
