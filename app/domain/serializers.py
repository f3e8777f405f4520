"""Public shapes of relay objects, as the /v1 API, events and callbacks carry them."""

from __future__ import annotations

from app.stores.events import iso
from app.stores.usage import number as credits_number


def task_view(task: dict, deliveries: list[dict] | None = None) -> dict:
    def number(name: str) -> int | None:
        value = task.get(name)
        return int(value) if value not in (None, "") else None

    return {
        "task_id": task["task_id"],
        "status": task["status"],
        "phase": task.get("phase") or None,
        "progress": int(task.get("progress") or 0),
        "turn_index": number("turn_index"),
        "format": task.get("format"),
        "export": task.get("export") or None,
        "record_key": task.get("record_key") or None,
        "run_id": task.get("run_id") or None,
        "run_restarted": task.get("run_restarted") == "1",
        "created_at": iso(float(task["created_at"])),
        "updated_at": iso(float(task["updated_at"])),
        "result": task.get("result"),
        "error": task.get("error"),
        "credits_used": credits_number(task["credits_used"])
        if task.get("credits_used") not in (None, "")
        else None,
        "duration_ms": number("duration_ms"),
        "deliveries": deliveries or [],
    }


def record_view(record: dict, tasks: list[dict]) -> dict:
    latest = next((t for t in tasks if t["status"] == "completed" and t.get("result")), None)
    return {
        "record_key": record["record_key"],
        "run_id": record["run_id"],
        "runs": record["runs"],
        "created_at": iso(record["created_at"]),
        "updated_at": iso(record["updated_at"]),
        "usage": {
            "credits_used": record["credits_used"],
            "duration_ms": record["duration_ms"],
            "task_count": record["task_count"],
        },
        "latest_result": ({"task_id": latest["task_id"], **latest["result"]} if latest else None),
        "tasks": [task_view(t) for t in tasks],
    }
