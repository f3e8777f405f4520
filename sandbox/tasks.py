"""The task life cycle: submit, finish (completed | failed | cancelled | expired), public views, events."""

from __future__ import annotations

import json
from typing import Any

from .builders import PRODUCTS
from .clock import iso
from .config import SandboxConfig
from .files import CONTENT_TYPES, FileStore
from .ids import new_id
from .links import FileRef, Links
from .store import TERMINAL, SandboxStore
from .webhooks import WebhookSender

_EVENT_TYPES = {
    "completed": "task.completed",
    "failed": "task.failed",
    "cancelled": "task.cancelled",
    "expired": "task.expired",
}


class RunNotFound(Exception):
    pass


class RunExpired(Exception):
    pass


class RunFormatMismatch(Exception):
    pass


class TaskService:
    def __init__(
        self,
        store: SandboxStore,
        files: FileStore,
        links: Links,
        config: SandboxConfig,
        webhooks: WebhookSender,
    ):
        self.store, self.files, self.links, self.config, self.webhooks = (
            store,
            files,
            links,
            config,
            webhooks,
        )
        self.on_finished = lambda task_id: None  # the executor wakes sync waiters through this

    # -- runs ---------------------------------------------------------------------------------------

    def run_expired(self, run: dict) -> bool:
        return (
            self.store.clock.now() - float(run["last_task_at"]) > self.config.run_retention_seconds
        )

    def run_status(self, run: dict) -> str:
        return "expired" if run["status"] in TERMINAL and self.run_expired(run) else run["status"]

    def conversation(self, run: dict) -> list[dict]:
        return json.loads(run["state"])["messages"]

    # -- submit -------------------------------------------------------------------------------------

    def submit(self, org: dict, kind: str, body: dict, base_url: str) -> dict:
        product = PRODUCTS[kind]
        if body.get("run_id"):
            run = self.store.get_run(body["run_id"], org["org_id"])
            if run is None:
                raise RunNotFound(body["run_id"])
            if self.run_status(run) == "expired":
                raise RunExpired(body["run_id"])
            if run["kind"] != kind:
                raise RunFormatMismatch(run["kind"])
        else:
            run = self.store.create_run(org["org_id"], product.format, kind, body["prompt"])
        return self.store.create_task(run, body["prompt"], body.get("webhook_url"), base_url)

    # -- endings ------------------------------------------------------------------------------------

    def complete(
        self, task: dict, run: dict, summary: str, path, turn: int, credits: int, ms: int
    ) -> None:
        product = PRODUCTS[task["kind"]]
        download_url, edit_url = self._links(task["base_url"], run["run_id"], task["task_id"])
        result = {
            "download_url": download_url,
            "edit_url": edit_url,
            "summary": summary,
            "artifacts": [
                {
                    "type": "document",
                    "file_name": product.file_name,
                    "content_type": CONTENT_TYPES[product.extension],
                    "size_bytes": path.stat().st_size,
                }
            ],
        }
        if not self.finish(
            task["task_id"], "completed", result=result, credits_used=credits, duration_ms=ms
        ):
            return
        messages = self._compacted(
            [
                *self.conversation(run),
                {"role": "user", "content": task["prompt"]},
                {"role": "assistant", "content": summary},
            ]
        )
        self.store.update_run(
            run["run_id"],
            latest_task_id=task["task_id"],
            file_name=product.file_name,
            turn_count=turn,
            state={"messages": messages},
        )
        self.store.add_run_usage(run["run_id"], credits, ms)

    def finish(self, task_id: str, status: str, **fields: Any) -> bool:
        """End a task once; emit its event and wake waiters. False when it had already ended."""
        now = self.store.clock.now()
        progress = {"progress": 100} if status == "completed" else {}
        if not self.store.transition(
            task_id, status=status, phase="", finished_at=now, updated_at=now, **progress, **fields
        ):
            return False
        task = self.store.get_task(task_id)
        assert task is not None
        self.store.update_run(task["run_id"], status=status, updated_at=now, last_task_at=now)
        if task["webhook_url"]:
            event = {
                "type": _EVENT_TYPES[status],
                "id": new_id("evt"),
                "created_at": iso(now),
                "data": self.view(task),
            }
            self.webhooks.enqueue(task["org_id"], task["webhook_url"], event)
        self.on_finished(task_id)
        return True

    def cancel(self, task: dict) -> bool:
        """Cancel a task that has not ended: at once when queued, at the agent's next step when running."""
        if task["status"] == "queued":
            return self.finish(
                task["task_id"],
                "cancelled",
                error={"code": "cancelled", "message": "The task was cancelled by the client."},
            )
        self.store.request_cancel(task["task_id"])
        return True

    def expire_stale(self) -> int:
        cutoff = self.store.clock.now() - self.config.queued_expiry_seconds
        expired = 0
        for task_id in self.store.active_tasks(created_before=cutoff):
            task = self.store.get_task(task_id)
            if task and task["status"] == "queued":
                expired += self.finish(
                    task_id,
                    "expired",
                    error={
                        "code": "expired",
                        "message": "The task waited in the queue for too long without pickup.",
                    },
                )
        return expired

    def purge_expired_bytes(self) -> int:
        cutoff = (
            self.store.clock.now()
            - self.config.run_retention_seconds
            - self.config.bytes_retention_seconds
        )
        purged = 0
        for run_id in self.store.runs_idle_since(cutoff):
            run = self.store.get_run(run_id)
            if run and run["status"] in TERMINAL:
                self.files.delete_run(run["org_id"], run_id)
                self.store.update_run(run_id, bytes_deleted=1)
                self.store.redis.zrem(self.store.key("runs", "by_activity"), run_id)
                purged += 1
        return purged

    # -- views --------------------------------------------------------------------------------------

    def view(self, task: dict) -> dict:
        """The public shape of a task, as GET /tasks/{id} and every event's data carry it."""

        def number(name: str) -> int | None:
            return int(task[name]) if task.get(name) not in (None, "") else None

        return {
            "task_id": task["task_id"],
            "run_id": task["run_id"],
            "status": task["status"],
            "phase": task["phase"] or None,
            "turn_index": number("turn_index"),
            "progress": int(task["progress"]),
            "created_at": iso(float(task["created_at"])),
            "updated_at": iso(float(task["updated_at"])),
            "result": json.loads(task["result"]) if task.get("result") else None,
            "error": json.loads(task["error"]) if task.get("error") else None,
            "credits_used": number("credits_used"),
            "duration_ms": number("duration_ms"),
        }

    def _links(self, base_url: str, run_id: str, task_id: str) -> tuple[str, str]:
        token, _ = self.links.download_token(FileRef(run_id, task_id))
        return f"{base_url}/files/{token}", f"{base_url}/view/{self.links.view_token(run_id)}"

    def run_links(self, base_url: str, run: dict) -> dict:
        if not run["latest_task_id"] or run.get("bytes_deleted"):
            return {"download_url": None, "download_expires_at": None, "edit_url": None}
        token, expires = self.links.download_token(FileRef(run["run_id"], run["latest_task_id"]))
        return {
            "download_url": f"{base_url}/files/{token}",
            "download_expires_at": iso(expires),
            "edit_url": f"{base_url}/view/{self.links.view_token(run['run_id'])}",
        }

    @staticmethod
    def _compacted(messages: list[dict]) -> list[dict]:
        """Keep the conversation bounded the way the agent does: older turns fold into one note."""
        if len(messages) <= 12:
            return messages
        folded = "; ".join(m["content"] for m in messages[:-8] if m["role"] == "assistant")
        return [{"role": "system", "content": f"Earlier work: {folded}"[:4000]}, *messages[-8:]]
