"""Runs: listing with cursors, links, downloads, retention, exports and their cache, the read-only view."""

from __future__ import annotations

import io

import httpx
import pytest
from openpyxl import load_workbook

from tests.sandbox_fixtures import fetch
from tests.support import tools

DAY = 86_400


def make_runs(client: httpx.Client, count: int, endpoint: str = "/excel/generate") -> list[str]:
    return [
        client.post(endpoint, json={"prompt": f"Report {i}"}).json()["run_id"] for i in range(count)
    ]


def test_runs_are_listed_newest_first_across_cursor_pages(sandbox):
    with sandbox.client() as client:
        created = make_runs(client, 7)
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/runs", params=params).json()
            seen += [item["run_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert pages == 3
    assert seen == list(reversed(created))
    with sandbox.client() as client:
        item = client.get("/runs", params={"limit": 1}).json()["items"][0]
    assert set(item) == {
        "run_id",
        "format",
        "status",
        "prompt",
        "credits_used",
        "duration_ms",
        "created_at",
        "file_name",
    }
    assert item["file_name"] == "workbook.xlsx" and item["status"] == "completed"


def test_runs_filter_by_format_and_status(sandbox):
    with sandbox.client() as client:
        excel = make_runs(client, 2)
        word = make_runs(client, 1, "/word/generate")
        failed = client.post("/excel/generate", json={"prompt": "x [[fail]]"}).json()["run_id"]
        only_word = client.get("/runs", params={"format": "word"}).json()["items"]
        only_failed = client.get("/runs", params={"status": "failed"}).json()["items"]
        completed_excel = client.get(
            "/runs", params={"format": "excel", "status": "completed"}
        ).json()["items"]
    assert [r["run_id"] for r in only_word] == word
    assert [r["run_id"] for r in only_failed] == [failed]
    assert [r["run_id"] for r in completed_excel] == list(reversed(excel))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"cursor": "nope"},
        {"format": "pdf"},
        {"sort": "asc"},
    ],
)
def test_bad_list_parameters_are_rejected(sandbox, params):
    with sandbox.client() as client:
        response = client.get("/runs", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == next(iter(params))


def test_run_links_download_redirect_and_link_expiry(sandbox):
    with sandbox.client() as client:
        run_id = make_runs(client, 1)[0]
        run = client.get(f"/runs/{run_id}").json()
        redirect = client.get(f"/runs/{run_id}/download")
        assert redirect.status_code == 302 and "/files/" in redirect.headers["location"]
        assert load_workbook(io.BytesIO(fetch(run["download_url"]).content)).sheetnames
        assert fetch(run["edit_url"]).status_code == 200
        sandbox.advance(DAY + 60)
        expired = fetch(run["download_url"])
        assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"
        fresh = client.get(f"/runs/{run_id}").json()["download_url"]
        assert fetch(fresh).status_code == 200
        tampered = fetch(fresh[:-3] + "xyz")
        assert tampered.status_code == 404


def test_retention_expires_runs_then_deletes_their_bytes(sandbox):
    with sandbox.client() as client:
        run_id = make_runs(client, 1)[0]
        sandbox.advance(31 * DAY)
        run = client.get(f"/runs/{run_id}").json()
        assert run["status"] == "expired" and run["download_url"]
        resumed = client.post("/excel/generate", json={"prompt": "more", "run_id": run_id})
        assert resumed.status_code == 410 and resumed.json()["error"]["code"] == "run_expired"
        assert [
            r["run_id"] for r in client.get("/runs", params={"status": "expired"}).json()["items"]
        ] == [run_id]
        sandbox.advance(30 * DAY)  # the sweep runs as part of the move
        gone = client.get(f"/runs/{run_id}").json()
        assert gone["status"] == "expired" and gone["download_url"] is None
        assert client.get(f"/runs/{run_id}/download").status_code == 410
        assert not (sandbox.runtime.files.run_dir(sandbox.org_id, run_id)).exists()


def test_csv_and_html_exports_and_the_cache(sandbox):
    conversions = sandbox.runtime.store.key("stats", "conversions")
    with sandbox.client() as client:
        run_id = make_runs(client, 1)[0]
        first = client.post(f"/runs/{run_id}/export", json={"format": "csv"}).json()
        second = client.post(f"/runs/{run_id}/export", json={"format": "csv"}).json()
        html = client.post(f"/runs/{run_id}/export", json={"format": "html"}).json()
    assert first["cached"] is False and second["cached"] is True
    assert int(sandbox.runtime.redis.get(conversions)) == 2  # csv once, html once
    csv_text = fetch(first["download_url"]).text
    lines = csv_text.splitlines()
    assert lines[2].startswith("Item,Q1,Q2,Q3,Q4,Total")
    north = lines[3].split(",")
    assert int(north[5]) == sum(int(v) for v in north[1:5]), (
        "totals are evaluated, not left as formulas"
    )
    page = fetch(html["download_url"])
    assert (
        page.headers["content-type"].startswith("text/html; charset=utf-8") and "Alpha" in page.text
    )


def test_docx_exports_to_text(sandbox):
    with sandbox.client() as client:
        run_id = make_runs(client, 1, "/word/generate")[0]
        text = client.post(f"/runs/{run_id}/export", json={"format": "txt"}).json()
    assert "Report 0" in fetch(text["download_url"]).text


def test_unsupported_export_lists_the_targets(sandbox):
    with sandbox.client() as client:
        run_id = make_runs(client, 1, "/slides/generate")[0]
        response = client.post(f"/runs/{run_id}/export", json={"format": "csv"})
        unknown = client.post(f"/runs/{run_id}/export", json={"format": "gif"})
    assert response.status_code == 400
    assert response.json()["error"]["supported"] == ["pdf", "png", "odp"]
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "format"


def test_export_without_libreoffice_says_what_to_install(make_sandbox):
    sandbox = make_sandbox(soffice="")
    with sandbox.client() as client:
        run_id = make_runs(client, 1)[0]
        response = client.post(f"/runs/{run_id}/export", json={"format": "pdf"})
    assert response.status_code == 501
    assert "libreoffice-calc-nogui" in response.json()["error"]["message"]


def test_pdf_export_through_libreoffice_is_cached(sandbox):
    tools.require("soffice")
    with sandbox.client() as client:
        run_id = make_runs(client, 1)[0]
        first = client.post(f"/runs/{run_id}/export", json={"format": "pdf"})
        assert first.status_code == 200, first.text
        second = client.post(f"/runs/{run_id}/export", json={"format": "pdf"}).json()
    pdf = fetch(first.json()["download_url"])
    assert pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    assert second["cached"] is True and fetch(second["download_url"]).content == pdf.content


def test_edit_view_shows_the_document(sandbox):
    with sandbox.client() as client:
        body = client.post("/excel/generate", json={"prompt": "Sales by region"}).json()
        client.post(
            "/excel/generate", json={"prompt": "Add a forecast for FY27", "run_id": body["run_id"]}
        )
        view = fetch(client.get(f"/runs/{body['run_id']}").json()["edit_url"])
    assert view.status_code == 200
    assert "Sales Region" in view.text and "Forecast FY27" in view.text
    assert "default-src 'none'" in view.headers["content-security-policy"]
