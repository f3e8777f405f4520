"""Batch files as people save them, over real HTTP: Excel's semicolons and byte-order mark, Windows-1252
refused by name, malformed lines refused with their line rather than reshaped, headers and numbers as a
person means them, and every fault of a row named by its line in the file and its column."""

from __future__ import annotations

import httpx

from tests.relay.test_batch_safety import refusal


def upload(relay, data: bytes, template: str = "Memo for {{company}}") -> httpx.Response:
    with relay.client() as client:
        return client.post(
            "/v1/batches",
            content=data,
            headers={"Content-Type": "text/csv"},
            params={"format": "word", "prompt_template": template},
        )


def prompts(relay, answer: httpx.Response) -> list[str]:
    assert answer.status_code == 202, answer.text
    return [row.prompt for row in relay.ctx.batches.rows(answer.json()["batch_id"])]


def test_a_file_from_european_excel_reads_as_its_author_means_it(make_relay):
    relay = make_relay(worker=False)  # the rows' prompts are the point
    excel = (
        "\ufeff Record_Key ;Company Name; Seats ;Zip\r\n"
        "deal:1;Müller GmbH;40;0123\r\n"
        "\r\n"
        'deal:2;"Société; Générale";12;75001\r\n'
    ).encode()
    template = "{{ company_name }}|{{ row['Company Name'] }}|{{ seats * 2 }}|{{ Zip }}"
    assert prompts(relay, upload(relay, excel, template)) == [
        "Müller GmbH|Müller GmbH|80|0123",
        "Société; Générale|Société; Générale|24|75001",
    ], "semicolons, accents, a column with a space, a number as a number, leading zeros kept"


def test_windows_1252_is_refused_by_name_rather_than_mangled(make_relay):
    relay = make_relay(worker=False)
    data = "record_key,company\ndeal:1,Acme\ndeal:2,Müller\n".encode("cp1252")
    error = refusal(upload(relay, data))
    assert error["errors"] == [
        {
            "row": 0,
            "column": "file",
            "line": 3,
            "message": 'the file is not UTF-8 (it reads as Windows-1252): save it as "CSV UTF-8" '
            "(Excel) or download it from Google Sheets, which writes UTF-8",
        }
    ]
    assert relay.ctx.batches.running() == []


def test_malformed_lines_and_big_cells_are_refused_with_their_line_and_column(make_relay):
    relay = make_relay(worker=False)
    shifted = b"record_key,company\ndeal:1,Acme,extra\ndeal:2\ndeal:3,Globex\n"
    quoted = b'record_key,company\ndeal:1,Acme\ndeal:2,"Glo"bex\n'
    big = b"record_key,company,note\ndeal:1,Acme,ok\ndeal:2,Globex," + b"x" * 140_000 + b"\n"
    shifted_error, quoted_error, big_error = (
        refusal(upload(relay, data)) for data in (shifted, quoted, big)
    )
    assert [(e["row"], e["line"]) for e in shifted_error["errors"]] == [(1, 2), (2, 3)]
    assert shifted_error["errors"][0]["message"] == (
        "this line has 3 cell(s) where the header names 2 columns"
    )
    assert [(e["row"], e["line"]) for e in quoted_error["errors"]] == [(2, 3)]
    assert quoted_error["errors"][0]["message"].startswith("this line cannot be read as CSV")
    assert big_error["errors"] == [
        {"row": 2, "column": "note", "line": 3, "message": "the cell is over 128 KiB"}
    ]
    assert relay.ctx.batches.running() == []


def test_schema_and_template_faults_are_listed_together_by_line_and_column(make_relay):
    relay = make_relay(worker=False)
    data = (
        "record_key,company\n"
        "deal:1,Acme\n"
        '"deal:2\n(two lines)",Globex\n'  # a quoted cell over two lines: rows and lines part
        f"{'k' * 501},Initech\n"
        "deal:4,\n"
    ).encode()
    error = refusal(upload(relay, data, template="{{ company }}{{ 1 / (company|length) }}"))
    assert [(e["row"], e["line"], e["column"]) for e in error["errors"]] == [
        (3, 5, "record_key"),
        (4, 6, "prompt_template"),
    ], error["errors"]
    assert error["errors"][0]["message"] == "record_key must be at most 500 characters (got 501)"
    assert error["message"].startswith("2 rows or columns are at fault; the first: row 3, line 5")
