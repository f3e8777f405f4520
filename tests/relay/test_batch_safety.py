"""Batches a tenant cannot turn against the relay, over real HTTP: templates rendered inside a budget (each
prompt at most the API's 20,000 characters, the batch's prompts a total, a runaway template stopped), every
fault of a template a 400 naming its row and column; and CSVs that a spreadsheet opens as text, never as
formulas."""

from __future__ import annotations

import csv
import io
import threading

import httpx

from app.domain import batch_template
from tests.relay.test_batches import batch_body, run
from tests.support.servers import eventually

ROWS = [{"record_key": f"deal:{n}", "company": "Acme", "seats": n} for n in range(1, 4)]


def refusal(answer: httpx.Response) -> dict:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_batch", error
    return error


def test_template_faults_answer_400_naming_the_row_and_the_column(make_relay):
    relay = make_relay(worker=False)  # nothing is to start
    with relay.client() as client:
        answers = {
            template: client.post("/v1/batches", json=batch_body(ROWS, template=template))
            for template in (
                "{{ 1/0 }}",
                "{{ company + 1 }}",
                "{{ company.__class__.__mro__ }}",
                "{{ seats / (seats - 2) }}",
            )
        }
    zero, typed, refused, second = (refusal(answer) for answer in answers.values())
    assert zero["errors"][0] == {
        "row": 1,
        "column": "prompt_template",
        "message": "the template failed: ZeroDivisionError: division by zero",
    }
    assert zero["count"] == 3 and zero["field"] == "rows.0.prompt_template"
    assert typed["errors"][0]["message"].startswith("the template failed: TypeError")
    assert refused["errors"][0]["message"].startswith("the sandbox refused it: access to attribute")
    assert [(e["row"], e["column"]) for e in second["errors"]] == [(2, "prompt_template")], (
        "only the row that divides by zero"
    )
    assert relay.ctx.batches.running() == [], "nothing started"


def test_every_rendered_prompt_is_at_most_the_apis_limit_and_the_batch_has_a_total(make_relay):
    relay = make_relay(worker=False, batch_max_prompt_chars=50_000)
    long_rows = [{"record_key": f"deal:{n}", "note": "x" * 19_000} for n in range(1, 4)]
    with relay.client() as client:
        blown = client.post("/v1/batches", json=batch_body(ROWS, template="{{ company * 250000 }}"))
        just_over = client.post(
            "/v1/batches",
            json=batch_body(
                [{"record_key": "deal:1", "note": "y" * 20_001}], template="{{ note }}"
            ),
        )
        total = client.post("/v1/batches", json=batch_body(long_rows, template="{{ note }}"))
        fine = client.post("/v1/batches", json=batch_body(long_rows[:2], template="{{ note }}"))
    blown_error = refusal(blown)
    assert blown_error["count"] == 3 and blown_error["errors"][0] == {
        "row": 1,
        "column": "prompt_template",
        "message": "the rendered prompt is over the API's 20,000 characters",
    }
    assert refusal(just_over)["errors"][0]["row"] == 1
    assert refusal(total)["errors"] == [
        {
            "row": 3,
            "column": "prompt_template",
            "message": "the batch's prompts together are over its total size",
        }
    ]
    assert fine.status_code == 202, fine.text
    stored = relay.ctx.batches.rows(fine.json()["batch_id"])
    assert [len(row.prompt) for row in stored] == [19_000, 19_000]
    assert relay.ctx.batches.running() == [fine.json()["batch_id"]], "only the batch within bounds"


def test_a_runaway_template_is_stopped_at_its_budget_and_the_relay_answers_meanwhile(make_relay):
    relay = make_relay(worker=False, batch_render_seconds=2)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    with relay.client() as client:
        runaway = client.post("/v1/batches", json=batch_body(ROWS, template=loops))
        memory = client.post("/v1/batches", json=batch_body(ROWS, template="{{ 'x' * 10**10 }}"))
        after = client.post("/v1/batches", json=batch_body(ROWS))
    error = refusal(runaway)
    assert error["errors"] == [
        {
            "row": 1,
            "column": "prompt_template",
            "message": "rendering the batch took over 2 s (its budget); stopped at this row",
        }
    ]
    assert refusal(memory)["errors"][0]["message"] == (
        "rendering this row needed more memory than a batch may use"
    )
    assert after.status_code == 202, "the relay goes on"


def test_runaway_templates_hold_at_most_the_renders_a_process_allows(make_relay):
    """One web process renders one batch at a time here: while a runaway template holds it, another batch
    is answered 503 with Retry-After at once rather than a second thread held."""
    relay = make_relay(worker=False, batch_render_seconds=20, batch_renders_at_once=1)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    answers: list[httpx.Response] = []

    def runaway() -> None:
        with relay.client() as client:
            answers.append(client.post("/v1/batches", json=batch_body(ROWS, template=loops)))

    held = threading.Thread(target=runaway)
    held.start()
    try:
        eventually(lambda: batch_template.rendering() == 1, 60, "the runaway batch to render")
        with relay.client() as client:
            busy = client.post("/v1/batches", json=batch_body(ROWS))
    finally:
        held.join(90)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "batches_busy", busy.text
    assert busy.headers["Retry-After"] == "20"
    [runaway_answer] = answers
    assert refusal(runaway_answer)["errors"][0]["row"] == 1


FORMULAS = ['=HYPERLINK("http://evil.example","Open")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


def test_the_manifest_opens_as_text_with_its_accents_in_excel(relay):
    rows = [{"record_key": key, "company": "Müller"} for key in [*FORMULAS, "Müller GmbH"]]
    with relay.client() as client:
        batch = run(client, batch_body(rows, template="Memo for {{company}}"))
        manifest = client.get(f"/v1/batches/{batch['batch_id']}/manifest.csv")
    raw = manifest.content
    assert raw.startswith(b"\xef\xbb\xbf"), "a UTF-8 byte-order mark: Excel reads the accents right"
    lines = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [line["record_key"] for line in lines] == [
        *(f"'{key}" for key in FORMULAS),
        "Müller GmbH",
    ], "a cell a spreadsheet would run as a formula begins with a quote"
    assert {line["status"] for line in lines} == {"completed"}
    assert float(lines[0]["credits"]) > 0, "numbers stay numbers"


def test_the_usage_csv_opens_as_text(relay):
    with relay.client() as client:
        for key in FORMULAS[:2]:
            relay.wait_task(client, relay.submit(client, prompt="Memo", record_key=key)["task_id"])
        answer = client.get(
            "/v1/usage", params={"group_by": "record"}, headers={"Accept": "text/csv"}
        )
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted(line["record"] for line in lines) == sorted(f"'{key}" for key in FORMULAS[:2])
