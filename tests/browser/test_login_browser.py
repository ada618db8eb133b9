"""Sign-in in a real browser: `kb ui` with a real OIDC provider process (`oidc-provider-mock`), driven through the
whole login in Chromium. An employee never sees the hr-only document (the sample `salary-bands-2024-zh.docx`,
`acl: [hr]`) nor the Library; an hr member sees the document; an admin gets the upload form; sign-out ends the
session; an unreachable provider is said, never answered with open mode."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from pathlib import Path

import pytest

from tests.app.ui.conftest import SAMPLE_SET
from tests.oidc_provider import CLIENT_ID, Provider
from tests.processes import free_port, kb_command, start, stop, wait_healthy

pytestmark = pytest.mark.browser

SALARY = "salary-bands-2024-zh.docx"
QUERY = "2024年度职级薪酬带宽表 薪资"
PUBLIC = ["hr/leave-policy-zh.html", "hr/payroll-zh.pdf", "it/vpn-token-reset-en.html"]


@pytest.fixture(scope="module")
def provider(oidc_provider):
    return oidc_provider


@pytest.fixture(scope="module")
def kb_root(tmp_path_factory, embedder) -> Path:
    """A few real sample documents, the confidential salary bands among them, ingested with MiniLM."""
    from app.services.library import sync

    root = tmp_path_factory.mktemp("login")
    docs = root / "docs"
    docs.mkdir()
    for rel in [*PUBLIC, f"hr/{SALARY}", f"hr/{SALARY}.meta.json"]:
        shutil.copy(SAMPLE_SET / "docs" / rel, docs / Path(rel).name)
    report = sync([docs], root / "index", embedder)
    assert not report.skipped and report.total_documents == len(PUBLIC) + 1
    return root


def serve_app(root: Path, provider_url: str, name: str):
    port = free_port()
    runtime = root / f"runtime-{name}"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HF_HUB_OFFLINE="1", KB_CONFIG=str(root / "absent.toml"), KB_INDEX_DIR=str(root / "index"),
               KB_EMBEDDER="packaged:all-MiniLM-L6-v2", KB_RERANKER="none", KB_UPLOAD_DIR=str(root / "uploads"),
               KB_AUDIT_LOG=str(root / "audit.jsonl"), XDG_RUNTIME_DIR=str(runtime),
               KB_AUTH_PROVIDER_URL=provider_url, KB_AUTH_CLIENT_ID=CLIENT_ID, KB_AUTH_CLIENT_SECRET="s3cret",
               KB_AUTH_COOKIE_SECRET=secrets.token_hex(32))
    log = root / f"ui-{name}.log"
    proc = start(kb_command("ui", "--port", str(port)), env, log)
    wait_healthy(proc, port, log)
    return proc, f"http://localhost:{port}", runtime  # the redirect URI's host: cookies are per host name


@pytest.fixture(scope="module")
def app(kb_root, provider):
    proc, url, runtime = serve_app(kb_root, provider.issuer, "up")
    try:
        yield url, runtime
    finally:
        stop(proc)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.route("**/cdn.jsdelivr.net/**", lambda route: route.abort())  # the provider's stylesheet: offline
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    context.close()


def settle(page) -> None:
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")


def sign_in(page, app_url: str, provider: Provider, sub: str) -> None:
    page.goto(app_url)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{provider.issuer}/oauth2/authorize?**")
    page.locator(f'form[aria-labelledby="heading-auth-predefined"] button[name="sub"][value="{sub}"]').click()
    page.wait_for_url(f"{app_url}/**")
    page.get_by_label("Question").wait_for()
    settle(page)


def sign_out(page, app_url: str, provider: Provider) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{provider.issuer}/oauth2/end_session?**")
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(f"{app_url}/**")
    page.get_by_role("button", name="Sign in").wait_for()


def search(page, query: str) -> str:
    box = page.get_by_label("Question")
    box.fill(query)
    box.press("Enter")
    page.locator(".kb-card").first.wait_for()
    # the recall preview (its summary says "reranking…") comes first; the reranked results replace it
    page.wait_for_function("() => !document.body.innerText.includes('reranking…')")
    settle(page)
    return page.locator("body").inner_text()


def nav_links(page) -> set[str]:
    """The page names the navigation offers."""
    names = ("Search", "Raw data", "Rerank playground", "Library", "Analytics", "Vocabulary", "Tuning", "Status")
    return {n for n in names if page.get_by_role("link", name=n, exact=True).count()}


def format_choices(page) -> set[str]:
    """The values the sidebar's format filter offers."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    side = page.locator('[data-testid="stSidebar"]')
    box = side.locator('[data-testid="stMultiSelect"]').filter(has_text="format")
    options = page.get_by_role("option")
    # A rerun of the app (the search just made, a session check) redraws the sidebar and closes an open list or
    # expander; on a busy machine it can land after any fixed pause. So: open what is closed, until the list shows.
    deadline = time.monotonic() + 90
    while True:
        if not box.locator("input").is_visible():
            side.get_by_text("Filter documents").click()
            box.locator("input").wait_for()
        box.scroll_into_view_if_needed()
        box.locator("input").click()
        try:
            options.first.wait_for(timeout=5000)
            break
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
    found = set(options.all_inner_texts()) - {"Select all"}
    page.keyboard.press("Escape")
    return found


def test_before_login_only_the_sign_in_page(page, app, provider):
    url, runtime = app
    page.goto(url)
    page.get_by_role("button", name="Sign in").wait_for()
    settle(page)
    body = page.locator("body").inner_text()
    assert page.get_by_label("Question").count() == 0 and page.locator(".kb-card").count() == 0
    assert "documents" not in body and "passages" not in body and "薪酬" not in body
    assert nav_links(page) == set()
    secrets_file = runtime / "kb-search" / f"streamlit-auth-{url.rsplit(':', 1)[1]}.toml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600 and "s3cret" in secrets_file.read_text()


def test_an_employee_never_sees_the_hr_document_nor_the_library(page, app, provider):
    url, _ = app
    sign_in(page, url, provider, "alice")
    side = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Alice Employee" in side and "public documents only" in side
    assert "Search" in nav_links(page) and not {"Library", "Vocabulary", "Tuning", "Status"} & nav_links(page)
    assert format_choices(page) == {"html", "pdf"}  # the hr-only .docx is not even a filter value for her
    body = search(page, QUERY)
    assert SALARY not in body and "薪酬带宽" not in body
    assert "Download" not in body or SALARY not in body
    for admin_page, marker in (("library", "Add or update documents"), ("vocabulary", "Try a question"),
                               ("status", "Reranker versions")):
        page.goto(f"{url}/{admin_page}")  # not in her navigation: Streamlit refuses it and runs Search instead
        page.get_by_role("dialog").get_by_text("Page not found").wait_for()
        page.get_by_label("Question").wait_for()
        settle(page)
        assert page.get_by_text(marker).count() == 0
        assert page.get_by_role("heading", name=admin_page.title()).count() == 0
        page.keyboard.press("Escape")
        page.get_by_role("dialog").wait_for(state="detached")
    sign_out(page, url, provider)
    page.reload()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.get_by_label("Question").count() == 0  # signed out for good


def test_an_hr_member_sees_the_hr_document(page, app, provider):
    url, _ = app
    sign_in(page, url, provider, "hana")
    assert "hr" in page.locator('[data-testid="stSidebar"]').inner_text()
    assert SALARY in search(page, QUERY)
    assert "Library" not in nav_links(page)
    assert format_choices(page) == {"docx", "html", "pdf"}


def test_an_admin_gets_the_library_upload_form(page, app, provider):
    url, _ = app
    sign_in(page, url, provider, "root")
    assert {"Search", "Library", "Vocabulary", "Tuning", "Status"} <= nav_links(page)
    page.goto(f"{url}/library")
    page.get_by_text("Add or update documents").wait_for()
    assert page.get_by_role("heading", name="Library").count() == 1
    # an admin's list holds every document, the hr-only one too
    assert f"{len(PUBLIC) + 1} documents" in page.locator("body").inner_text()


def test_an_unreachable_provider_is_said_and_never_opens_the_app(page, kb_root):
    dead = f"http://localhost:{free_port()}"
    proc, url, _ = serve_app(kb_root, dead, "down")
    try:
        page.goto(url)
        page.get_by_text("Sign-in unavailable").wait_for()
        settle(page)
        assert dead in page.locator("body").inner_text()
        assert page.get_by_role("button", name="Sign in").is_disabled()
        assert page.get_by_label("Question").count() == 0
    finally:
        stop(proc)


def test_opened_at_another_host_the_sign_in_page_says_where_it_works(page, app):
    """Issue 29: a login started at 127.0.0.1 came back to localhost without its state and landed on the sign-in
    page again with nothing said; now that page sends people to the address sign-in returns to."""
    url, _ = app
    page.goto(url.replace("localhost", "127.0.0.1"))
    page.get_by_text("Sign-in works at").wait_for()
    assert page.get_by_role("link", name="Open the sign-in address").get_attribute("href").rstrip("/") == url
    assert page.get_by_role("button", name="Sign in").count() == 0  # no login that cannot finish
