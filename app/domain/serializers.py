"""Public shapes of relay objects, as the /v1 API, events and callbacks carry them."""

from __future__ import annotations

from app.core.states import TaskStatus
from app.stores.events import iso
from app.stores.records import Record
from app.stores.tasks import Task
from app.stores.usage import number as credits_number


def task_view(task: Task, deliveries: list[dict] | None = None) -> dict:
    return {
        "task_id": task.task_id,
        "status": task.status,
        "phase": task.phase,
        "progress": task.progress,
        "turn_index": task.turn_index,
        "format": task.format,
        "export": task.export,
        "record_key": task.record_key,
        "run_id": task.run_id,
        "run_restarted": task.run_restarted,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "result": task.result,
        "error": task.error,
        "credits_used": None if task.credits_used is None else credits_number(task.credits_used),
        "duration_ms": task.duration_ms,
        "deliveries": deliveries or [],
    }


def record_view(record: Record, tasks: list[Task]) -> dict:
    latest = next((t for t in tasks if t.status == TaskStatus.COMPLETED and t.result), None)
    return {
        "record_key": record.record_key,
        "run_id": record.run_id,
        "runs": record.runs,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "usage": {
            "credits_used": credits_number(record.credits_used),
            "duration_ms": record.duration_ms,
            "task_count": record.task_count,
        },
        "latest_result": ({"task_id": latest.task_id, **latest.result} if latest else None),
        "tasks": [task_view(t) for t in tasks],
    }
