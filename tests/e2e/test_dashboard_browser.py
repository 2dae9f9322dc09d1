"""Boundary of the dashboard as an operator meets it: Debian's Chromium (headless, driven by Playwright) on a real
`serve --transport http`, with agents acting through the real MCP SDK client."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.support.dashboard import WRONG_KEY, Deployment, deployment
from tests.support.env import connected
from tests.support.fleet_state import write_fleet_state
from tests.support.http_server import mcp_client
from tests.support.natsserver import NatsServer
from tests.support.stdio import ok
from tests.support.work_tools import broadcast, claim, register

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold?</b>'
SEEN_S = 5.0
"""The acceptance bound for a new agent to show; other expectations wait up to 10 s (a loaded 2-core machine)."""
expect.set_options(timeout=10_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # No skip: scripts/test installs Chromium (scripts/chromium); a machine without it fails this test.
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: run scripts/chromium (Debian's chromium package)"
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def logged_in(context: BrowserContext, d: Deployment, credential: str) -> Page:
    page = await context.new_page()
    await page.goto(d.dashboard)
    await expect(page).to_have_url(f"{d.dashboard}/login")  # no session: the login form
    await page.fill("#credential", credential)
    await page.click("#login")
    return page


async def test_operator_watches_agents_work_and_a_refused_login_live(
    tmp_path: Path, nats_server: NatsServer, browser: Browser
) -> None:
    async with deployment(tmp_path, nats_server, "dash-browser") as d:
        ops = await browser.new_context(viewport={"width": 1440, "height": 900})
        page = await logged_in(ops, d, d.admin_key)
        try:
            await watch_live(browser, ops, page, d, tmp_path, nats_server.url)
        except BaseException:
            # What the operator saw when it failed, and what the server said.
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard-failure.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"failure screenshot: {shot}\nserver stderr:\n{d.server.stderr()[-4000:]}")
            raise


async def watch_live(
    browser: Browser, ops: BrowserContext, page: Page, d: Deployment, tmp_path: Path, nats_url: str
) -> None:
    await expect(page).to_have_url(d.dashboard)
    await expect(page.locator("#ns")).to_have_text("dash-browser")
    await expect(page.locator("#conn")).to_have_text("NATS connected")
    cookies = await ops.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("nmcp_dashboard", True, "Strict")]

    async with mcp_client(d.server.url, d.agent_key, agent="builder") as agent:
        # An agent registers: it shows on the page within 5 s, online, with its capability.
        guid = await register(agent, "python")
        row = page.locator(f'#agents tr[data-guid="{guid}"]')
        await expect(row).to_have_attribute("data-status", "online", timeout=SEEN_S * 1000)
        await expect(row).to_contain_text("python")
        # Named by its handle, and by the key it came through (named "worker": see deployment()).
        await expect(row.locator(".via")).to_have_text(re.compile(r"^via worker \[key \w+\]$"))

        # A channel message with markup is shown as text: nothing of it runs or becomes an element.
        await ok(agent, "warp_channels_send", channel="roadmap", message=XSS)
        channel = page.locator('#channels [data-channel="roadmap"]')
        await expect(channel).to_contain_text(XSS)
        assert await page.evaluate("window.__xss") is None
        assert await channel.locator("img, script, b").count() == 0

        # A work item: pending, then claimed, on the page as it happens.
        item_id = await broadcast(agent, "build-docs", "python")
        item = page.locator(f'#items li[data-item="{item_id}"]')
        await expect(item).to_have_attribute("data-state", "pending")
        await expect(page.locator('#queues tr[data-capability="python"] td').nth(1)).to_have_text("1")
        claimed = await claim(agent, "python")
        assert claimed is not None and claimed["id"] == item_id
        await expect(item).to_have_attribute("data-state", "claimed")
        await expect(page.locator('#queues tr[data-capability="python"] td').nth(2)).to_have_text("1")

        # A reservation: on the page with its paths and holder; its reason (agent input) shown as text.
        held = await ok(agent, "warp_reservations_acquire", resources=["src/api/**"], reason=XSS)
        reserved = page.locator(f'#reservations tr[data-reservation="{held["reservationId"]}"]')
        await expect(reserved).to_contain_text("src/api/**")
        await expect(reserved).to_contain_text(XSS[:40])
        assert await page.evaluate("window.__xss") is None
        assert await reserved.locator("img, script, b").count() == 0

    # The fleet panel: empty until a coordinator has run here, then its targets, leader and decisions.
    await expect(page.locator("#fleet")).to_contain_text("no fleet has run in this namespace")
    async with connected(tmp_path / "fleet", nats_url) as conn:
        await write_fleet_state(conn, "dash-browser")
    target = page.locator('#fleet tr[data-target="py"]')
    await expect(target).to_contain_text("1 / 2")
    await expect(page.locator("#fleet-leader")).to_have_attribute("data-active", "true")
    await expect(page.locator('#fleet-decisions li[data-target="docs"]')).to_contain_text("start")

    # Someone else tries a wrong key, three times: refused at the form, and the operator sees one security event
    # counted three times (not three rows).
    intruder = await browser.new_context()
    for _ in range(3):
        bad = await logged_in(intruder, d, WRONG_KEY)
        await expect(bad).to_have_url(f"{d.dashboard}/login?e=refused")
        await expect(bad.locator("#login-error")).to_contain_text("Login refused")
        await bad.close()
    assert await intruder.cookies() == []
    # A real key without the dashboard admin operation is refused too (audited as denied).
    agent_page = await logged_in(intruder, d, d.agent_key)
    await expect(agent_page).to_have_url(f"{d.dashboard}/login?e=refused")
    await intruder.close()
    refusals = page.locator('#security tr[data-kind="auth_failure"]')
    await expect(refusals).to_have_attribute("data-count", "3")
    await expect(refusals).to_have_count(1)
    await expect(refusals).to_contain_text("×3")
    await expect(page.locator('#security tr[data-kind="denied"]').first).to_contain_text("dashboard_not_allowed")
    # The traffic graph has this agent's calls.
    await expect(page.locator("#traffic svg")).to_contain_text("registry_register")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    await page.emulate_media(color_scheme="dark")  # the page follows prefers-color-scheme
    dark = ARTIFACTS / "dashboard-dark.png"
    await page.screenshot(path=str(dark), full_page=True)
    for made in (shot, dark):
        shutil.copy(made, tmp_path / made.name)
    print(f"dashboard screenshots: {shot} {dark}")

    # Logging out ends the session: the page goes back to the form, and the data endpoint refuses.
    await page.click("#logout")
    await expect(page).to_have_url(f"{d.dashboard}/login")
    response = await page.request.get(f"{d.dashboard}/api/snapshot")
    assert response.status == 401
    await ops.close()
