"""The demo page in a real headless Chromium against the real gateway and mesh.

Uses Debian's chromium (installed by `make setup`); a browser that cannot start fails the test.
The screenshots are kept under .artifacts/gateway/ (docs/demo.png is a copy of demo.png).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, Request, expect, sync_playwright

from pantree_common.auth import new_token
from tests.gateway.conftest import Gateway, start_gateway

CHROMIUM = os.environ.get("PANTREE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "gateway"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    """The page, failing the test on script errors or on a request that leaves the gateway."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    host = gateway.url.removeprefix("http://")

    def stays_on_the_gateway(request: Request) -> None:
        if not request.url.split("://", 1)[1].startswith(host):  # http:// and ws://
            problems.append(f"external request: {request.url}")

    page.on("request", stays_on_the_gateway)
    page.goto(gateway.url + "/")
    yield page
    context.close()
    assert not problems


def start_with_keyboard(page: Page, items: str) -> None:
    """Reach the basket field by Tab from the shopper list, type, and press Enter to start."""
    expect(page.get_by_label("Shopper")).to_contain_text("Busy family")
    page.get_by_label("Shopper").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("First basket")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type(items)
    page.keyboard.press("Enter")


def test_a_seed_streams_into_months_then_offers(page: Page) -> None:
    start_with_keyboard(page, "milk, eggs, whole wheat bread, bananas, coffee")
    expect(page.locator(".month-card")).to_have_count(6)
    expect(page.locator(".month-card").last).to_be_visible()
    expect(page.locator("#chart rect.bar")).to_have_count(6)
    offers = page.locator("#offers tbody tr")
    expect(offers.first).to_contain_text("every")
    expect(page.locator("#summary")).to_contain_text("offers saving")
    assert page.locator("#error").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "demo.png", full_page=True, animations="disabled")

    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=ARTIFACTS / "demo-375px.png", full_page=True, animations="disabled")


def test_a_refused_seed_is_explained_in_plain_words(page: Page) -> None:
    start_with_keyboard(page, "qqq zzz xylophone plutonium")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Some of what you entered can't be used.")
    expect(alert).to_contain_text("Reference:")
    expect(page.locator(".month-card")).to_have_count(0)


def test_with_authentication_on_the_page_asks_for_a_token_once(
    browser: Browser, gateway: Gateway, tmp_path: Path
) -> None:
    token, line = new_token("process_seed", "web-demo")
    secured = start_gateway(tmp_path, gateway.mesh, PANTREE_AUTH_TOKENS=line)
    context = browser.new_context()
    try:
        page = context.new_page()
        asked: list[str] = []

        def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept(token)

        page.on("dialog", answer)
        page.goto(secured.url + "/")
        start_with_keyboard(page, "milk, eggs, coffee")
        expect(page.locator("#summary")).to_contain_text("offers saving")
        assert len(asked) == 1 and "access token" in asked[0]
    finally:
        context.close()
        assert secured.stop() == 0
