"""A fake Slack Web API for tests and local runs: the 3-step external upload, chat.postMessage, bot-token
auth, and fault knobs (429 with Retry-After, 5xx, an upload size limit). Files are streamed to disk."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, Response, jsonify, request


@dataclass
class SlackFile:
    file_id: str
    filename: str
    length: int
    path: Path
    received: int = 0
    shared_to: str = ""
    thread_ts: str = ""


@dataclass
class FakeSlack:
    storage: Path
    valid_tokens: set[str] = field(default_factory=lambda: {"xoxb-test-token"})
    max_upload_bytes: int | None = None
    files: dict[str, SlackFile] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    _faults: list[tuple[int, float | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, count: int, status: int = 429, retry_after: float | None = 1) -> None:
        """The next ``count`` API calls answer ``status`` (429 carries Retry-After)."""
        with self._lock:
            self._faults += [(status, retry_after)] * count

    def shared_files(self, channel: str | None = None) -> list[SlackFile]:
        return [f for f in self.files.values() if f.shared_to and (channel is None or f.shared_to == channel)]

    def app(self) -> Flask:
        app = Flask(__name__)
        self.storage.mkdir(parents=True, exist_ok=True)

        @app.post("/api/<method>")
        def api(method: str):
            self.calls.append(method)
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault:
                status, retry_after = fault
                headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                body = {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
                return jsonify(body), status, headers
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            token = bearer or request.values.get("token")
            if token not in self.valid_tokens:
                return jsonify({"ok": False, "error": "invalid_auth"})
            handler = {"files.getUploadURLExternal": self._get_upload_url,
                       "files.completeUploadExternal": self._complete_upload,
                       "chat.postMessage": self._post_message}.get(method)
            return handler() if handler else jsonify({"ok": False, "error": "unknown_method"})

        @app.post("/upload/<file_id>")
        def upload(file_id: str):
            slack_file = self.files.get(file_id)
            if slack_file is None:
                return Response("unknown upload", status=404)
            with slack_file.path.open("wb") as out:
                while chunk := request.stream.read(256 * 1024):
                    out.write(chunk)
                    slack_file.received += len(chunk)
            if slack_file.received != slack_file.length:
                return Response(f"expected {slack_file.length} bytes, got {slack_file.received}", status=400)
            return Response("OK - " + str(slack_file.received), status=200)

        return app

    def _values(self) -> dict:
        return request.get_json(silent=True) or request.values.to_dict()

    def _get_upload_url(self):
        values = self._values()
        length = int(values.get("length") or 0)
        if not values.get("filename") or length <= 0:
            return jsonify({"ok": False, "error": "missing_argument"})
        if self.max_upload_bytes is not None and length > self.max_upload_bytes:
            return jsonify({"ok": False, "error": "file_upload_size_restricted"})
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = SlackFile(file_id, values["filename"], length, self.storage / file_id)
        return jsonify({"ok": True, "upload_url": f"{request.host_url}upload/{file_id}", "file_id": file_id})

    def _complete_upload(self):
        values = self._values()
        files = values.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        channel = values.get("channel_id", "")
        shared = []
        for item in files or []:
            slack_file = self.files.get(item.get("id", ""))
            if slack_file is None or slack_file.received != slack_file.length:
                return jsonify({"ok": False, "error": "file_not_found"})
            if channel:
                slack_file.shared_to, slack_file.thread_ts = channel, values.get("thread_ts", "")
            shared.append({"id": slack_file.file_id, "title": item.get("title", slack_file.filename)})
        if channel and values.get("initial_comment"):
            self._record_message(channel, values["initial_comment"], values.get("thread_ts", ""), shared)
        return jsonify({"ok": True, "files": shared})

    def _post_message(self):
        values = self._values()
        if not values.get("channel"):
            return jsonify({"ok": False, "error": "channel_not_found"})
        ts = self._record_message(values["channel"], values.get("text", ""), values.get("thread_ts", ""), [])
        return jsonify({"ok": True, "channel": values["channel"], "ts": ts})

    def _record_message(self, channel: str, text: str, thread_ts: str, files: list) -> str:
        ts = f"{time.time():.6f}"
        self.messages.append({"channel": channel, "text": text, "thread_ts": thread_ts, "files": files, "ts": ts})
        return ts
