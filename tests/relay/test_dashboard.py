"""The operator's dashboard in real headless chromium (Debian's package, driven by Playwright): sign in,
watch a task's bar reach 100 %, see a broken destination's delivery in the dead-letter list, fix the
destination, click Replay, see it delivered. Plus what must never work: no sign-in, no CSRF token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from rq import Queue
from rq.job import JobStatus

from app.cli.devstack import free_port
from app.core.config import RelayConfig
from app.web import create_app
from tests.support import tools
from tests.support.dashboard import ADMIN_TOKEN, sign_in
from tests.support.servers import ServedApp, eventually


@pytest.fixture(scope="module")
def browser():
    executable = tools.require("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def _shots(tmp_path: Path) -> Path:
    """RELAY_SCREENSHOTS=docs/screenshots keeps the pictures for the README; otherwise they go to tmp."""
    folder = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_watch_a_task_then_replay_a_dead_delivery(make_relay, receiver, browser, tmp_path):
    relay = make_relay(admin_token=ADMIN_TOKEN)
    shots = _shots(tmp_path)
    receiver.default_status = (
        400  # the subscriber refuses: a permanent failure, straight to the dead letters
    )
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    page.goto(relay.url + "/dashboard/")
    assert "/dashboard/login" in page.url
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    # on the page it loads
    expect(page.locator("[role=alert]")).to_have_text("That admin token is not right.")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))

    broken = {"kind": "webhook", "config": {"url": receiver.url}}
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Quarterly board pack with a revenue bridge [[hold=board]]",
            record_key="crm:deal:1",
            destinations=[broken],
        )
    task_id = task["task_id"]
    page.goto(relay.url + "/dashboard/")
    bar = f'[data-progress="{task_id}"]'
    page.wait_for_function(
        "([selector]) => Number(document.querySelector(selector).getAttribute('aria-valuenow')) > 0"
        " && Number(document.querySelector(selector).getAttribute('aria-valuenow')) < 100",
        arg=[bar],
        timeout=60_000,
    )
    page.wait_for_timeout(700)  # let the bar's width transition finish before the picture
    page.screenshot(path=str(shots / "dashboard-tasks.png"))
    relay.sandbox.release("board")
    page.wait_for_function(
        "([selector]) => document.querySelector(selector).getAttribute('aria-valuenow') === '100'",
        arg=[bar],
        timeout=60_000,
    )
    page.wait_for_selector(f'[data-deliveries="{task_id}"] .state.dead', timeout=60_000)

    page.click("text=Dead letters")
    row = page.locator("tr[data-delivery]")
    # waits: the click's navigation may not have loaded the new page yet
    expect(row).to_have_count(1)
    assert "answered 400" in row.inner_text()
    page.screenshot(path=str(shots / "dashboard-dead-letters.png"))
    receiver.default_status = 204  # the subscriber is fixed
    row.locator("button", has_text="Replay").click()
    # retries until the page it loads says it
    expect(page.locator("[role=status]")).to_contain_text("is queued again")

    with relay.client() as client:
        eventually(
            lambda: (
                client.get(f"/v1/tasks/{task_id}").json()["deliveries"][0]["state"] == "delivered"
            ),
            60,
            "the replayed delivery",
        )
    page.goto(relay.url + f"/dashboard/tasks/{task_id}")
    expect(page.locator(".state.delivered")).to_have_count(1)
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(relay.url + "/dashboard/")
    # no sideways scroll
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    phone.screenshot(path=str(shots / "dashboard-phone.png"))


def _signed_in(browser, relay, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 760})
    page.goto(relay.url + "/dashboard/login")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/$"))
    return page


def test_watch_a_batch_filter_its_rows_and_retry_the_failed_ones(make_relay, browser, tmp_path):
    relay = make_relay(admin_token=ADMIN_TOKEN)
    shots = _shots(tmp_path)
    rows = [
        # the batch stays mid-way until it is released
        {
            "record_key": f"deal:{n}",
            "prompt": f"Renewal memo {n}"
            + (" [[fail]]" if n in (3, 7) else "")
            + (" [[hold=last-row]]" if n == 12 else ""),
        }
        for n in range(1, 13)
    ]
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json={"format": "word", "rows": rows}).json()[
            "batch_id"
        ]
    page = _signed_in(browser, relay)
    page.click("nav >> text=Batches")
    page.click(f"text={batch_id}")
    bar = "[data-batch-progress]"
    page.wait_for_function(
        "([s]) => { const v = Number(document.querySelector(s).getAttribute('aria-valuenow'));"
        " return v > 0 && v < 100; }",
        arg=[bar],
        timeout=60_000,
    )
    page.wait_for_timeout(700)  # the bar's transition, before the picture
    page.screenshot(path=str(shots / "dashboard-batch.png"), full_page=True)
    expect(page.locator("[data-batch-counts]")).to_contain_text("running")
    relay.sandbox.release("last-row")
    # the page reloads at the end
    page.wait_for_selector("[data-batch-status].completed", timeout=60_000)
    expect(page.locator("[data-count=failed]")).to_have_text("2")
    manifest = httpx.get(
        page.get_attribute("a:has-text('Manifest (CSV)')", "href")
    ).text.splitlines()
    assert len(manifest) == 13 and manifest[3].startswith("3,deal:3,failed"), (
        "a signed link: no API key needed"
    )
    page.click("[data-tab=failed]")
    failed = page.locator("tr[data-row]")
    expect(failed).to_have_count(2)
    assert [failed.nth(i).locator("td").first.inner_text() for i in range(2)] == ["3", "7"]
    assert "failed" in failed.first.inner_text()

    before = {row.row: row.task_id for row in relay.ctx.batches.rows(batch_id)}
    page.click("button:has-text('Retry 2 failed')")
    expect(page.locator("[role=status]")).to_contain_text("Failed rows queued again: 2.")
    with relay.client() as client:
        eventually(
            lambda: client.get(f"/v1/batches/{batch_id}").json()["status"] != "running",
            60,
            "the retried rows to end",
        )
    after = {row.row: row.task_id for row in relay.ctx.batches.rows(batch_id)}
    assert [n for n in after if after[n] != before[n]] == [3, 7], "only the failed rows ran again"


def test_search_pages_cancel_charts_and_budget_bars(make_relay, receiver, browser, tmp_path):
    relay = make_relay(admin_token=ADMIN_TOKEN)
    shots = _shots(tmp_path)
    receiver.default_status = (
        400  # a webhook destination that refuses: a dead delivery for the chart
    )
    with relay.client() as client:
        client.put("/v1/budgets/tenant", json={"monthly_credits": 400})
        client.put("/v1/budgets/records/deal%3A1", json={"monthly_credits": 50})
        client.put(
            "/v1/budgets/records/deal%3Avip", json={"monthly_credits": 1000, "hard_cap": True}
        )
        done = [
            relay.submit(
                client,
                prompt=f"Memo {n}",
                record_key=f"deal:{n % 3}",
                format="word" if n % 2 else "excel",
                destinations=[{"kind": "folder", "config": {"path": "out"}}]
                if n < 3
                else [{"kind": "webhook", "config": {"url": receiver.url}}]
                if n == 3
                else [],
            )
            for n in range(52)
        ]
        failed = relay.submit(client, prompt="Broken [[fail]]", record_key="deal:failed")
        for task in [*done, failed]:
            relay.wait_task(client, task["task_id"])
        running = relay.submit(client, prompt="A long model [[hold=long]]", record_key="deal:long")
    page = _signed_in(browser, relay)
    expect(page.locator("tr[data-task]")).to_have_count(50)  # the newest 50 first
    page.click("a[rel=next]")
    expect(page.locator("tr[data-task]")).to_have_count(4)  # then the rest

    page.goto(relay.url + "/dashboard/")
    page.select_option("select[name=status]", "failed")
    page.click("button:has-text('Find')")
    expect(page.locator("tr[data-task]")).to_have_count(1)
    [row] = page.locator("tr[data-task]").all()
    assert failed["task_id"] in row.inner_text()
    assert (
        row.locator("[data-progress-error]").inner_text()
        == "The agent could not complete its plan for this prompt."
    )
    assert row.locator("[role=progressbar]").count() == 0, (
        "a failed task shows its error, not a bar"
    )
    page.goto(relay.url + "/dashboard/?record_key=deal%3Along")
    page.screenshot(path=str(shots / "dashboard-search.png"))
    page.goto(relay.url + "/dashboard/records")
    long_row = page.locator("tr", has_text="deal:long")
    assert long_row.locator("td").nth(2).inner_text() == "1", "a running task counts in its record"

    page.goto(relay.url + "/dashboard/?record_key=deal%3Along")
    page.click(f"[data-cancel='{running['task_id']}'] button")
    expect(page.locator("[role=status]")).to_contain_text("is cancelled")
    with relay.client() as client:
        assert relay.wait_task(client, running["task_id"])["status"] == "cancelled"

    page.click("nav >> text=Usage")
    expect(page.locator("svg.chart")).to_have_count(4)
    credits = page.locator("[data-chart=credits] rect")
    assert credits.count() >= 1 and "acme" in credits.first.locator("title").text_content()
    assert page.locator("[data-chart=outcomes] .legend").inner_text().split() == [
        "completed",
        "failed",
        "cancelled",
    ]
    assert page.locator("[data-chart=time] circle").count() >= 2, "p50 and p95 of today"
    rates = page.locator("[data-chart=deliveries] text").evaluate_all(
        "nodes => nodes.map((n) => n.textContent)"
    )
    assert (
        "folder" in rates
        and "webhook" in rates
        and any(t.startswith("100.0% · 3 of 3") for t in rates)
    )
    tenant_budget = page.locator(f"tr[data-tenant='{relay.tenant_id}'] [data-budget=tenant]")
    assert float(tenant_budget.get_attribute("aria-valuenow")) > 0
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "dashboard-usage.png"), full_page=True)
    page.click(f"tr[data-tenant='{relay.tenant_id}'] a")
    record_budget = page.locator("[data-budget='deal:1']")
    expect(record_budget).to_have_count(1)
    assert "hard cap" in page.locator("tr[data-record='deal:vip']").inner_text()
    assert "over" in record_budget.get_attribute("class"), "deal:1 spent more than its 50 credits"
    assert page.locator("[data-chart=formats] .legend").inner_text().split() == ["excel", "word"]
    page.screenshot(path=str(shots / "dashboard-tenant-usage.png"), full_page=True)


def test_sign_in_csrf_and_no_secrets(make_relay, receiver):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False)
    with relay.client() as client:
        client.post(
            "/v1/destinations",
            json={
                "name": "ops",
                "kind": "webhook",
                "config": {"url": receiver.url, "secret": "whsec_ZGVzdGluYXRpb24tc2VjcmV0LXZhbHVl"},
            },
        ).raise_for_status()
        client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
        ).raise_for_status()
        relay.submit(client, prompt="x", record_key="crm:1")
    anonymous = httpx.Client(base_url=relay.url)
    assert anonymous.get("/dashboard/").status_code == 302
    assert anonymous.get("/dashboard/api/tasks").status_code == 401
    assert anonymous.get("/dashboard/rq/").status_code == 302

    browser_like = httpx.Client(base_url=relay.url, follow_redirects=True)
    login_page = browser_like.get("/dashboard/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    # no CSRF token
    assert browser_like.post("/dashboard/login", data={"token": ADMIN_TOKEN}).status_code == 400
    signed = browser_like.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": token})
    assert signed.status_code == 200 and "Tasks" in signed.text
    # no CSRF token
    assert browser_like.post("/dashboard/deliveries/dlv_X/replay").status_code == 400
    assert browser_like.get("/dashboard/rq/").status_code == 200

    secrets = [
        relay.api_key,
        relay.sandbox.api_key,
        relay.sandbox.webhook_secret,
        relay.config.encryption_keys,
        "whsec_ZGVzdGluYXRpb24tc2VjcmV0LXZhbHVl",
        relay.ctx.secret,
        ADMIN_TOKEN,
    ]
    for page in (
        "/dashboard/",
        "/dashboard/records",
        "/dashboard/hooks",
        "/dashboard/destinations",
        "/dashboard/tenants",
        "/dashboard/dead-letters",
        "/dashboard/api/tasks",
    ):
        text = browser_like.get(page).text
        assert not [s for s in secrets if s in text], page


def test_dashboard_is_off_without_an_admin_token(make_relay):
    relay = make_relay(worker=False)
    assert httpx.get(relay.url + "/dashboard/login").status_code == 404
    assert httpx.get(relay.url + "/dashboard/rq/").status_code == 404


def _failed_job(relay, queue_name: str = "relay-test-failed") -> tuple[Queue, str]:
    """A job in the queue's failed registry, as a worker leaves one (no worker serves this queue)."""
    queue = Queue(queue_name, connection=relay.ctx.rq_redis)
    job = queue.enqueue("math.sqrt", "not a number")
    queue.remove(job)
    job.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(job, ttl=600, exc_string="TypeError: must be real number")
    assert queue.failed_job_registry.get_job_ids() == [job.id] and queue.job_ids == []
    return queue, job.id


def test_rq_dashboard_changes_state_only_by_post_with_the_csrf_token(make_relay):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False)
    queue, job_id = _failed_job(relay)
    admin, status = sign_in(relay)
    assert status == 302
    failed_page = f"/dashboard/rq/0/view/jobs/{queue.name}/failed/8/asc/1"
    assert admin.get(failed_page).status_code == 200
    # a link on any site, followed by a signed-in admin (SameSite=Lax sends the cookie on it)
    lured = admin.get(
        f"/dashboard/rq/requeue/{queue.name}", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert lured.status_code == 405 and lured.headers["Allow"] == "POST"
    assert queue.failed_job_registry.get_job_ids() == [job_id], "nothing was requeued"
    assert admin.post(f"/dashboard/rq/requeue/{queue.name}").status_code == 400, "no CSRF token"
    assert queue.failed_job_registry.get_job_ids() == [job_id]

    # rq-dashboard's pages give their scripts the token, which they send as X-CSRFToken
    token = admin.cookies.get("_csrf_token", path="/dashboard/rq")
    elsewhere = admin.post(
        f"/dashboard/rq/requeue/{queue.name}",
        headers={"X-CSRFToken": token, "Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    requeued = admin.post(f"/dashboard/rq/requeue/{queue.name}", headers={"X-CSRFToken": token})
    assert requeued.status_code == 200 and requeued.json() == {"status": "OK", "count": 1}
    assert queue.failed_job_registry.get_job_ids() == [] and queue.job_ids == [job_id]


def test_a_copied_session_cookie_dies_at_sign_out_and_when_the_token_is_replaced(make_relay):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False)
    admin, _ = sign_in(relay)
    copied = httpx.Client(base_url=relay.url, cookies=admin.cookies)
    assert copied.get("/dashboard/").status_code == 200
    page = admin.get("/dashboard/").text
    csrf_token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert admin.post("/dashboard/logout", data={"csrf_token": csrf_token}).status_code == 302
    assert copied.get("/dashboard/").status_code == 302, "signed out: the copy is signed out too"
    assert copied.get("/dashboard/rq/").status_code == 302
    assert copied.get("/dashboard/api/tasks").status_code == 401

    admin, _ = sign_in(relay)
    copied = httpx.Client(base_url=relay.url, cookies=admin.cookies)
    assert copied.get("/dashboard/").status_code == 200
    # the token is replaced: the relay restarts with a new one (the same signing key, the same Redis)
    replaced = replace(relay.config, admin_token=ADMIN_TOKEN[::-1])
    restarted = ServedApp(create_app(replaced)).start()
    try:
        copied.base_url = httpx.URL(restarted.url)
        assert copied.get("/dashboard/").status_code == 302
        assert copied.get("/dashboard/rq/").status_code == 302
        fresh, status = sign_in(relay, ADMIN_TOKEN[::-1], base_url=restarted.url)
        assert status == 302 and fresh.get("/dashboard/").status_code == 200
    finally:
        restarted.stop()
    assert not [k for k in relay.ctx.redis.scan_iter("*") if ADMIN_TOKEN in k], "no token in a key"


def test_failed_sign_ins_are_throttled_per_address(make_relay):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False, admin_login_limit="3 per hour")
    for _ in range(3):
        assert sign_in(relay, "a-guess")[1] == 401
    client, status = sign_in(relay)
    assert status == 429, "even the right token, once the guesses are spent"
    assert client.get("/dashboard/").status_code == 302
    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    elsewhere, status = sign_in(relay, transport=other_address)
    assert status == 302 and elsewhere.get("/dashboard/").status_code == 200


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("RELAY_SECRET_KEY", "replace-with-a-random-32-byte-token", "is a placeholder"),
        ("RELAY_ADMIN_TOKEN", "hunter2-admin", "is shorter than 32 characters"),
        ("RELAY_ADMIN_TOKEN", "ab" * 20, "has fewer than 12 different characters"),
    ],
)
def test_no_process_starts_with_a_weak_signing_key_or_admin_token(
    make_relay, variable, value, said
):
    relay = make_relay(worker=False)
    env = {**relay.env(), variable: value}
    commands = [["web", "--port", str(free_port())], ["worker"], ["scheduler"]]
    for command in commands if "placeholder" in said else commands[:1]:
        ran = subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # a process that started would serve until killed
        )
        assert ran.returncode != 0 and f"{variable} {said}" in ran.stderr, (command, ran.stderr)
    with pytest.raises(ValueError, match=f"^{variable} {said}"):
        create_app(RelayConfig.from_env(env))
