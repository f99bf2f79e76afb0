"""The page at GET /, in headless Chromium driven by Playwright, against the local server with
the shipped model: it shows what the API answers, shows the API's errors in its words, never
renders the API's text as HTML, passes axe's accessibility rules, and works from the keyboard.

Needs Debian's `chromium` (`.ci/run` installs it); skipped, saying so, where it is missing.
The screenshots go to $TEST_ARTIFACTS_DIR (default: test-artifacts/ in the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from infra.make_events import RESNET, SHOR

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
# What these machines need: no sandbox as root, no GPU, and no background requests to Google,
# which the closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HTTP_ERROR_LOGGED = "Failed to load resource: the server responded with a status of 4"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO / "test-artifacts"))

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def post(base_url: str, body: dict) -> dict:
    """The API's own answer (or error) for a classify body."""
    request = urllib.request.Request(
        f"{base_url}/classify", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Chromium with a new, empty profile (--user-data-dir), headless."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext, shipped_server: str) -> Iterator[Page]:
    """The page, loaded; fails the test on any request off its origin, console error or
    Content-Security-Policy violation."""
    page = browser.new_page()
    elsewhere, errors = [], []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(shipped_server) else elsewhere.append(request.url)
        ),
    )

    def on_console(message: ConsoleMessage) -> None:
        # Chromium logs every 4xx answer to fetch; those are the API's errors under test.
        if message.type == "error" and not message.text.startswith(HTTP_ERROR_LOGGED):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(f"{shipped_server}/")
    assert response is not None and response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    yield page
    page.close()
    assert elsewhere == [], f"requests off the page's origin: {elsewhere}"
    assert errors == [], f"console errors: {errors}"


def shown(page: Page) -> list[tuple[str, str, bool]]:
    """(code, score as shown, marked suggested) for each row of the results table."""
    rows = page.locator("#rows tr")
    return [
        (
            rows.nth(i).locator("td.code").inner_text(),
            rows.nth(i).locator(".value").inner_text(),
            "suggested" in (rows.nth(i).get_attribute("class") or ""),
        )
        for i in range(rows.count())
    ]


def submit(
    page: Page, title: str, abstract: str, top_k: str = "5", threshold: str = "", date: str = ""
) -> None:
    page.fill("#title", title)
    page.fill("#abstract", abstract)
    page.fill("#top_k", top_k)
    page.fill("#threshold", threshold)
    page.fill("#date", date)
    page.click("#submit")
    page.wait_for_selector("#submit:not([disabled])")


def test_the_page_shows_the_apis_answer_for_a_real_abstract(page: Page, shipped_server: str):
    submit(page, RESNET["title"], RESNET["abstract"])
    answer = post(shipped_server, {"title": RESNET["title"], "abstract": RESNET["abstract"]})
    scored = post(
        shipped_server,
        {"title": RESNET["title"], "abstract": RESNET["abstract"], "top_k": 5, "threshold": 0},
    )
    suggested = {label["label"] for label in answer["results"][0]["labels"]}
    expected = [
        (label["label"], f"{label['score']:.3f}", label["label"] in suggested)
        for label in scored["results"][0]["labels"]
    ]
    assert shown(page) == expected
    assert page.inner_text("#error") == ""
    assert answer["model"]["version"] in page.inner_text("#model")
    assert page.inner_text("#results-heading") == f"Suggestions for “{RESNET['title']}”"
    first_name = scored["results"][0]["labels"][0]["name"]
    assert page.locator("#rows tr").first.locator("td").nth(1).inner_text() == first_name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-resnet.png"), full_page=True)
    print(f"\nscreenshot: {ARTIFACTS / 'page-resnet.png'}")


def test_a_date_reaches_the_api_and_an_empty_one_is_not_sent(page: Page, shipped_server: str):
    """Shor's paper of 1995 with its date, which the shipped model's year prior covers: the
    page shows the API's answer for the dated paper, and without a date the undated one."""
    paper = {"title": SHOR["title"], "abstract": SHOR["abstract"], "top_k": 5}
    dated = post(shipped_server, {**paper, "date": "1995-08-30"})["results"][0]["labels"]
    undated = post(shipped_server, paper)["results"][0]["labels"]
    assert dated != undated  # else this test could not tell them apart
    submit(page, SHOR["title"], SHOR["abstract"], date=" 1995-08-30 ")
    assert [code for code, _, marked in shown(page) if marked] == [x["label"] for x in dated]
    submit(page, SHOR["title"], SHOR["abstract"], date="  ")
    assert [code for code, _, marked in shown(page) if marked] == [x["label"] for x in undated]
    submit(page, SHOR["title"], SHOR["abstract"], date="August 1995")
    assert page.inner_text("#error").endswith("(invalid_date)")


def test_top_k_and_threshold_controls_reach_the_api(page: Page, shipped_server: str):
    submit(page, SHOR["title"], SHOR["abstract"], top_k="3", threshold="0.2")
    body = {"title": SHOR["title"], "abstract": SHOR["abstract"], "top_k": 3, "threshold": 0.2}
    suggested = [label["label"] for label in post(shipped_server, body)["results"][0]["labels"]]
    rows = shown(page)
    assert len(rows) == 3
    assert [code for code, _, marked in rows if marked] == suggested


@pytest.mark.parametrize(
    ("abstract", "threshold", "code"),
    [
        ("", "", "empty_abstract"),
        ("a" * 20_001, "", "abstract_too_long"),
        (RESNET["abstract"], "1.5", "invalid_threshold"),
        (RESNET["abstract"], "high", "invalid_threshold"),
    ],
    ids=["empty", "20001-characters", "threshold-out-of-range", "threshold-not-a-number"],
)
def test_errors_are_shown_as_the_api_words_them(
    page: Page, shipped_server: str, abstract: str, threshold: str, code: str
):
    submit(page, "A title", abstract, threshold=threshold)
    sent = {"title": "A title", "abstract": abstract, "top_k": 5}
    if threshold:
        sent["threshold"] = float(threshold) if threshold[0].isdigit() else threshold
    error = post(shipped_server, sent)
    assert error["error"] == code
    assert page.inner_text("#error") == f"{error['message']} ({code})"
    assert page.locator("#results").is_hidden()
    if code == "abstract_too_long":
        page.screenshot(path=str(ARTIFACTS / "page-error.png"), full_page=True)


def test_the_apis_text_is_never_rendered_as_html(page: Page):
    attack = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    submit(page, attack, f"{RESNET['abstract']} {attack}")
    assert page.inner_text("#results-heading") == f"Suggestions for “{attack}”"
    assert page.locator("#results img, #results script").count() == 0
    assert page.evaluate("window.pwned") is None


def test_the_page_passes_axes_accessibility_rules(page: Page):
    submit(page, RESNET["title"], RESNET["abstract"])  # the results table is checked too
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_the_page_works_from_the_keyboard_alone(page: Page, shipped_server: str):
    def tab_to(element_id: str) -> None:
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reaches #{element_id}")

    tab_to("title")
    page.keyboard.type(SHOR["title"])
    tab_to("abstract")
    page.keyboard.insert_text(SHOR["abstract"])
    page.keyboard.press("Control+Enter")  # submits from the abstract
    page.wait_for_selector("#results:not([hidden])")
    answer = post(shipped_server, {"title": SHOR["title"], "abstract": SHOR["abstract"]})
    suggested = [label["label"] for label in answer["results"][0]["labels"]]
    assert [code for code, _, marked in shown(page) if marked] == suggested
    tab_to("top_k")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    tab_to("submit")
    focus = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focus != "none", "the focused button shows no outline"
    page.keyboard.press("Enter")
    expect(page.locator("#rows tr")).to_have_count(2)


def test_a_top_k_typo_is_sent_as_typed_for_the_api_to_refuse(page: Page):
    # a number input would turn "1e" into "" and the API's default of 5, unseen
    submit(page, "A title", RESNET["abstract"], top_k="1e")
    assert page.inner_text("#error").endswith("(invalid_top_k)")
    assert page.locator("#results").is_hidden() and page.inner_text("#status") == ""
