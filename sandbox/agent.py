"""The simulated agent: walks the documented phases in order and builds a real file on saving_doc."""

from __future__ import annotations

import logging
import os
import re
import threading
import zipfile

from .builders import PRODUCTS, make_plan
from .config import SandboxConfig
from .files import FileStore
from .store import SandboxStore
from .tasks import TaskService

log = logging.getLogger(__name__)

_DURATION = re.compile(r"\[\[duration=(\d+(?:\.\d+)?)\]\]")
_PAD = re.compile(r"\[\[pad_mb=(\d+)\]\]")
HOLD_NAME = r"[A-Za-z0-9_.:-]{1,64}"
_HOLD = re.compile(rf"\[\[hold=({HOLD_NAME})\]\]")
_HOLD_CHECK_SECONDS = (
    0.05  # a held task looks at this process's cancel and release signals this often
)
_HOLD_RECHECK_SECONDS = (
    0.5  # and at Redis (another process's release or cancel, an expiry) this often
)
_COMPACT_AFTER = 6  # messages in the conversation before the agent compacts its context


class Agent:
    def __init__(
        self, service: TaskService, store: SandboxStore, files: FileStore, config: SandboxConfig
    ):
        self._service = service
        self._store = store
        self._files = files
        self._config = config

    def execute(self, task_id: str, cancelled: threading.Event) -> None:
        task = self._store.get_task(task_id)
        if task is None or task["status"] != "queued":
            return  # cancelled or expired while it waited
        try:
            self._execute(task, cancelled)
        except Exception:
            log.exception("agent failed on %s", task_id)
            self._service.finish(
                task_id,
                "failed",
                error={
                    "code": "internal_error",
                    "message": "The agent stopped unexpectedly; retry the request.",
                },
            )

    def _execute(self, task: dict, cancelled: threading.Event) -> None:
        # duration_ms is on the sandbox clock too
        task_id, started = (
            task["task_id"],
            self._store.clock.now(),
        )
        run = self._store.get_run(task["run_id"])
        assert run is not None
        if not self._store.transition(
            task_id, expect="queued", status="running", started_at=started
        ):
            return
        self._store.update_run(run["run_id"], status="running")
        steps = self._steps(task, run)
        pause = self._duration(task["prompt"]) / len(steps)
        turn, built, held = int(run["turn_count"]), None, False
        for index, phase in enumerate(steps):
            fields: dict = {"phase": phase, "progress": 5 + 90 * index // len(steps)}
            if phase == "agent_turn":
                turn += 1
                fields["turn_index"] = turn
            done, cancel_requested = self._store.enter_phase(task_id, **fields)
            if not done:
                return  # ended elsewhere (cancel of a queued task, expiry, restart)
            if cancel_requested:  # asked through another process: this one's Event was not set
                self._cancel(task_id)
                return
            if phase == "executing_plan" and not held:
                held = True
                if not self._held(task, cancelled):
                    return
            if phase == "executing_plan" and self._config.fail_marker in task["prompt"]:
                self._service.finish(
                    task_id,
                    "failed",
                    error={
                        "code": "agent_error",
                        "message": "The agent could not complete its plan for this prompt.",
                    },
                )
                return
            if phase == "saving_doc":
                built = self._build(task, run, turn)
            if cancelled.wait(pause):
                self._cancel(task_id)
                return
        if self._cancel_requested(task_id):
            self._cancel(task_id)
            return
        assert built is not None
        summary, path = built
        elapsed_ms = int((self._store.clock.now() - started) * 1000)
        self._service.complete(task, run, summary, path, turn, self._credits(task), elapsed_ms)

    def _held(self, task: dict, cancelled: threading.Event) -> bool:
        """Wait while the task's ``[[hold=NAME]]`` is not released (its first executing_plan, mid-run): a test
        sees the task running for as long as it needs, whatever the machine's speed. False when the task
        was cancelled (then ended here) or ended elsewhere meanwhile."""
        match = _HOLD.search(task["prompt"])
        if not match:
            return True
        name, task_id = match.group(1), task["task_id"]
        released_here = self._store.release_signal(name)
        self._store.hold(name, task_id)
        try:
            while not (released_here.is_set() or self._store.released(name)):
                status, cancel_requested = self._store.task_flags(task_id)
                if cancel_requested or self._cancelled_while_held(cancelled, released_here):
                    self._cancel(task_id)
                    return False
                if status != "running":
                    return False  # expired or ended elsewhere
        finally:
            self._store.unhold(name, task_id)
        return True

    @staticmethod
    def _cancelled_while_held(cancelled: threading.Event, released_here: threading.Event) -> bool:
        """Wait up to _HOLD_RECHECK_SECONDS for a cancel or a release made in this process (True: cancelled).
        What other processes do (release, cancel, restart) is read from Redis between these waits."""
        for _ in range(round(_HOLD_RECHECK_SECONDS / _HOLD_CHECK_SECONDS)):
            if cancelled.wait(_HOLD_CHECK_SECONDS):
                return True
            if released_here.is_set():
                return False
        return False

    def _cancel(self, task_id: str) -> None:
        self._service.finish(
            task_id,
            "cancelled",
            error={"code": "cancelled", "message": "The task was cancelled by the client."},
        )

    def _cancel_requested(self, task_id: str) -> bool:
        status, cancel_requested = self._store.task_flags(task_id)
        return status is None or cancel_requested

    def _steps(self, task: dict, run: dict) -> list[str]:
        messages = self._service.conversation(run)
        steps = ["loading_doc"]
        if task["resumed"] == "1":
            steps.append("restoring_state")
        steps += ["agent_turn", "executing_plan", "agent_turn", "executing_plan"]
        if len(messages) >= _COMPACT_AFTER:
            steps.append("compacting_context")
        steps += ["saving_doc", "uploading_result"]
        if task["webhook_url"]:
            steps.append("dispatching_webhook")
        return steps

    def _duration(self, prompt: str) -> float:
        match = _DURATION.search(prompt)
        return float(match.group(1)) if match else self._config.task_seconds

    def _build(self, task: dict, run: dict, turn: int):
        product = PRODUCTS[task["kind"]]
        previous = None
        if run["latest_task_id"]:
            previous = self._files.document(
                run["org_id"], run["run_id"], run["latest_task_id"], product.extension
            )
        final = self._files.document(
            run["org_id"], run["run_id"], task["task_id"], product.extension
        )
        staged = FileStore.staging(final).with_suffix(f".{product.extension}")
        summary = product.build(previous, make_plan(task["prompt"], turn), staged)
        if (pad := _PAD.search(task["prompt"])) and product.extension in ("xlsx", "docx", "pptx"):
            pad_document(staged, int(pad.group(1)))
        FileStore.publish(staged, final)
        return summary, final

    @staticmethod
    def _credits(task: dict) -> int:
        size = len(task["prompt"])
        return 15 + min(40, size // 20) if task["resumed"] == "1" else 40 + min(80, size // 10)


def pad_document(path, megabytes: int) -> None:
    """Make a test document large: an extra, uncompressed part of random bytes in its zip container,
    written in chunks (Office ignores parts it does not know)."""
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
        archive.open("customXml/sandbox-padding.bin", "w", force_zip64=True) as part,
    ):
        for _ in range(megabytes):
            part.write(os.urandom(1024 * 1024))
