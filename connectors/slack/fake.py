"""A fake Slack for tests and local runs, as strict as Slack (docs/platforms.md, "Slack", gives the source of
each rule): the Web API's 3-step external upload and chat.postMessage with bot-token auth and each method's
scope (``missing_scope``, with the scopes a token has in ``X-OAuth-Scopes`` on every answer); channels the bot
must be a member of (``not_in_channel``: posting to a public channel without membership needs
chat:write.public, sharing a file needs membership), joined with conversations.join (channels:join, public
channels only), looked at with conversations.info and auth.test; the workspace's upload policies (size,
uploads disabled, file types); the files methods' rate tier (Tier 4, 100 a minute per workspace, answered
429 ``ratelimited`` with Retry-After); slash-command response_urls (5 uses within 30 minutes); the OAuth v2
install (consent page and oauth.v2.access); fault knobs (429 with Retry-After, refusing calls until it is
over; 5xx). Files go to disk."""

from __future__ import annotations

import base64
import itertools
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request

from ..fake_knobs import Lockout

RESPONSE_URL_USES = 5
RESPONSE_URL_LIFE = 30 * 60
BOT_USER = "U0BOT"
OLD_SCOPES = frozenset({"commands", "chat:write", "files:write"})
"""What a token not listed in ``FakeSlack.scopes`` was granted: the scopes the relay's manifest asked for
before it asked for channels:join and channels:read."""
TIER_4_PER_MINUTE = 100
"""files.getUploadURLExternal and files.completeUploadExternal: Tier 4, "100+ per minute" per workspace."""
_SCOPES = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "files.getUploadURLExternal": {"files:write"},
    "files.completeUploadExternal": {"files:write"},
    "conversations.join": {"channels:join"},
}
_TIER_4 = {"files.getUploadURLExternal", "files.completeUploadExternal"}
UPLOAD_POLICIES = (
    "file_uploads_disabled",
    "file_uploads_except_images_disabled",
    "file_type_not_allowed",
)
"""What files.getUploadURLExternal answers in a workspace whose admins restrict uploads."""


@dataclass
class Channel:
    private: bool = False
    members: set[str] = field(default_factory=set)
    name: str = ""


@dataclass
class _Tier:
    """A method tier's window per workspace: ``limit`` calls in any ``seconds``."""

    limit: int
    seconds: float
    calls: list[float] = field(default_factory=list)

    def wait(self, now: float) -> float:
        """Count a call made ``now``; the seconds until the window has room (0: it is within the limit)."""
        self.calls = [t for t in self.calls if now - t < self.seconds]
        if len(self.calls) >= self.limit:
            return self.calls[0] + self.seconds - now
        self.calls.append(now)
        return 0.0


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
    upload_policy: str = ""
    """One of UPLOAD_POLICIES: what files.getUploadURLExternal answers instead of an upload URL."""
    channels: dict[str, Channel] = field(default_factory=dict)
    """The workspace's channels; one not listed does not exist (``channel_not_found``)."""
    scopes: dict[str, set[str]] = field(default_factory=dict)
    """A token's scopes; a token not listed has OLD_SCOPES."""
    tier_4_seconds: float = 60.0
    """The Tier 4 window (a minute; tests shorten it with the relay's pace)."""
    tier_4_limit: int = TIER_4_PER_MINUTE
    """Calls of the Tier 4 methods in a window (tests scale it with the window)."""
    _tiers: dict[str, _Tier] = field(default_factory=dict)
    files: dict[str, SlackFile] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    responses: dict[str, list[dict]] = field(default_factory=dict)
    """Messages sent to each response_url, by its id."""
    oauth_clients: dict[str, str] = field(
        default_factory=lambda: {"client-1.apps": "client-secret"}
    )
    installing_team: tuple[str, str] = ("T0INSTALL", "Acme Corp")
    """The workspace whose admin approves on the consent page."""
    url: str = ""
    """Where this fake is served (set by whoever serves it): response_urls point here."""
    _response_born: dict[str, float] = field(default_factory=dict)
    _codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    _faults: list[tuple[int, float | None]] = field(default_factory=list)
    lockout: Lockout = field(default_factory=Lockout)
    """After a 429, Web API calls before its Retry-After is over are refused ("ratelimited") and listed in
    ``lockout.early``: Slack asks to wait that long before calling again."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add_channel(
        self, channel: str, private: bool = False, members: set[str] | None = None
    ) -> Channel:
        """A channel of the workspace, with the bot among its members unless ``members`` says otherwise."""
        self.channels[channel] = Channel(private, {BOT_USER} if members is None else members)
        return self.channels[channel]

    def fail_next(self, count: int, status: int = 429, retry_after: float | None = 1) -> None:
        """The next ``count`` API calls answer ``status`` (429 carries Retry-After)."""
        with self._lock:
            self._faults += [(status, retry_after)] * count

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts in each slash command."""
        response_id = secrets.token_hex(8)
        self.responses[response_id], self._response_born[response_id] = [], time.time()
        return f"{self.url}/commands/T0/{response_id}"

    def age_response_url(self, url: str, seconds: float) -> None:
        """Pretend ``seconds`` have passed for this response_url."""
        self._response_born[url.rsplit("/", 1)[-1]] -= seconds

    def replies(self, url: str) -> list[dict]:
        return self.responses[url.rsplit("/", 1)[-1]]

    def shared_files(self, channel: str | None = None) -> list[SlackFile]:
        return [
            f
            for f in self.files.values()
            if f.shared_to and (channel is None or f.shared_to == channel)
        ]

    def app(self) -> Flask:
        app = Flask(__name__)
        self.storage.mkdir(parents=True, exist_ok=True)

        @app.post("/commands/<team>/<response_id>")
        def respond(team: str, response_id: str):
            messages = self.responses.get(response_id)
            if messages is None:
                return Response("invalid_url", status=404)
            if time.time() - self._response_born[response_id] > RESPONSE_URL_LIFE:
                return Response("expired_url", status=404)
            if len(messages) >= RESPONSE_URL_USES:
                return Response("used_url", status=404)
            body = request.get_json(silent=True) or {}
            if not body.get("text") and not body.get("blocks"):
                return Response("no_text", status=400)
            messages.append(body)
            return Response("ok", status=200)

        @app.get("/oauth/v2/authorize")
        def authorize():
            """Slack's consent page, with the admin clicking Allow at once."""
            if request.args.get("client_id") not in self.oauth_clients or not request.args.get(
                "redirect_uri"
            ):
                return Response("invalid_client_id", status=400)
            code = secrets.token_hex(8)
            self._codes[code] = (request.args["redirect_uri"], request.args.get("scope", ""))
            back = request.args["redirect_uri"]
            query = urlencode({"code": code, "state": request.args.get("state", "")})
            return redirect(f"{back}{'&' if '?' in back else '?'}{query}")

        @app.post("/api/<method>")
        def api(method: str):
            self.calls.append(method)
            if method == "oauth.v2.access":
                return self._oauth_access()
            if self.lockout.refuses(method):
                wait = max(1, math.ceil(self.lockout.left()))
                return (
                    jsonify({"ok": False, "error": "ratelimited"}),
                    429,
                    {"Retry-After": str(wait)},
                )
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault:
                status, retry_after = fault
                headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                body = {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
                if status == 429:
                    self.lockout.start(retry_after)
                return jsonify(body), status, headers
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            token = bearer or request.values.get("token") or ""
            if token not in self.valid_tokens:
                return jsonify({"ok": False, "error": "invalid_auth"})
            granted = self.scopes.get(token, set(OLD_SCOPES))
            headers = {"X-OAuth-Scopes": ",".join(sorted(granted))}
            handler = {
                "auth.test": self._auth_test,
                "files.getUploadURLExternal": self._get_upload_url,
                "files.completeUploadExternal": self._complete_upload,
                "chat.postMessage": lambda: self._post_message(granted),
                "conversations.info": lambda: self._conversation_info(granted),
                "conversations.join": self._join,
            }.get(method)
            if handler is None:
                return jsonify({"ok": False, "error": "unknown_method"}), 200, headers
            missing = _SCOPES.get(method, set()) - granted
            if missing:
                return self._missing(sorted(missing)[0], granted), 200, headers
            if method in _TIER_4 and (wait := self._tier_4_wait(token)):
                return (
                    jsonify({"ok": False, "error": "ratelimited"}),
                    429,
                    {**headers, "Retry-After": str(max(1, math.ceil(wait)))},
                )
            answer = handler()
            return (*answer, headers) if isinstance(answer, tuple) else (answer, 200, headers)

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
                return Response(
                    f"expected {slack_file.length} bytes, got {slack_file.received}", status=400
                )
            return Response("OK - " + str(slack_file.received), status=200)

        return app

    def _oauth_access(self):
        values = self._values()
        client_id, client_secret = values.get("client_id", ""), values.get("client_secret", "")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if self.oauth_clients.get(client_id) != client_secret or not client_secret:
            return jsonify({"ok": False, "error": "invalid_client_id"})
        grant = self._codes.pop(values.get("code", ""), None)
        if grant is None:
            return jsonify({"ok": False, "error": "invalid_code"})
        if values.get("redirect_uri") and values["redirect_uri"] != grant[0]:
            return jsonify({"ok": False, "error": "bad_redirect_uri"})
        token = f"xoxb-{secrets.token_hex(12)}"
        self.valid_tokens.add(token)
        self.scopes[token] = {scope for scope in grant[1].split(",") if scope}
        team_id, team_name = self.installing_team
        return jsonify(
            {
                "ok": True,
                "access_token": token,
                "token_type": "bot",
                "scope": grant[1],
                "bot_user_id": "U0BOT",
                "app_id": "A0RELAY",
                "team": {"id": team_id, "name": team_name},
                "enterprise": None,
                "authed_user": {"id": "U0ADMIN"},
            }
        )

    def _tier_4_wait(self, token: str) -> float:
        """The workspace's Tier 4 window (one workspace per token here): 0, or the wait a 429 asks for."""
        with self._lock:
            tier = self._tiers.setdefault(token, _Tier(self.tier_4_limit, self.tier_4_seconds))
            return tier.wait(time.monotonic())

    def _missing(self, needed: str, granted: set[str]):
        return jsonify(
            {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(sorted(granted)),
            }
        )

    def _auth_test(self):
        team_id, team_name = self.installing_team
        return jsonify(
            {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": team_name,
                "user": "overten",
                "team_id": team_id,
                "user_id": BOT_USER,
                "bot_id": "B0RELAY",
            }
        )

    def _conversation_info(self, granted: set[str]):
        """A public channel's info needs channels:read, a private one's groups:read and membership."""
        channel_id = self._values().get("channel", "")
        channel = self.channels.get(channel_id)
        if channel is None or (channel.private and BOT_USER not in channel.members):
            return jsonify({"ok": False, "error": "channel_not_found"})
        needed = "groups:read" if channel.private else "channels:read"
        if needed not in granted:
            return self._missing(needed, granted)
        return jsonify(
            {
                "ok": True,
                "channel": {
                    "id": channel_id,
                    "name": channel.name or channel_id.lower(),
                    "is_channel": not channel.private,
                    "is_private": channel.private,
                    "is_member": BOT_USER in channel.members,
                },
            }
        )

    def _join(self):
        channel_id = self._values().get("channel", "")
        channel = self.channels.get(channel_id)
        if channel is None or (channel.private and BOT_USER not in channel.members):
            return jsonify({"ok": False, "error": "channel_not_found"})
        if channel.private:
            return jsonify({"ok": False, "error": "method_not_supported_for_channel_type"})
        channel.members.add(BOT_USER)
        return jsonify({"ok": True, "channel": {"id": channel_id, "is_member": True}})

    def _membership(self, channel_id: str, public_posting: bool):
        """None when the bot may post in the channel; else Slack's refusal."""
        channel = self.channels.get(channel_id)
        if channel is None or (channel.private and BOT_USER not in channel.members):
            return jsonify({"ok": False, "error": "channel_not_found"})
        if BOT_USER in channel.members or (public_posting and not channel.private):
            return None
        return jsonify({"ok": False, "error": "not_in_channel"})

    def _values(self) -> dict:
        return request.get_json(silent=True) or request.values.to_dict()

    def _get_upload_url(self):
        values = self._values()
        length = int(values.get("length") or 0)
        if not values.get("filename") or length <= 0:
            return jsonify({"ok": False, "error": "missing_argument"})
        if self.max_upload_bytes is not None and length > self.max_upload_bytes:
            return jsonify({"ok": False, "error": "file_upload_size_restricted"})
        if self.upload_policy:
            return jsonify({"ok": False, "error": self.upload_policy})
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = SlackFile(file_id, values["filename"], length, self.storage / file_id)
        return jsonify(
            {"ok": True, "upload_url": f"{request.host_url}upload/{file_id}", "file_id": file_id}
        )

    def _complete_upload(self):
        values = self._values()
        files = values.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        channel = values.get("channel_id", "")
        if channel and (refused := self._membership(channel, public_posting=False)):
            return refused  # sharing a file needs membership, whatever the scopes
        shared = []
        for item in files or []:
            slack_file = self.files.get(item.get("id", ""))
            if slack_file is None or slack_file.received != slack_file.length:
                return jsonify({"ok": False, "error": "file_not_found"})
            if channel:
                slack_file.shared_to, slack_file.thread_ts = channel, values.get("thread_ts", "")
            shared.append(
                {"id": slack_file.file_id, "title": item.get("title", slack_file.filename)}
            )
        if channel and values.get("initial_comment"):
            self._record_message(
                channel, values["initial_comment"], values.get("thread_ts", ""), shared
            )
        return jsonify({"ok": True, "files": shared})

    def _post_message(self, granted: set[str]):
        values = self._values()
        if not values.get("channel"):
            return jsonify({"ok": False, "error": "channel_not_found"})
        if refused := self._membership(values["channel"], "chat:write.public" in granted):
            return refused
        ts = self._record_message(
            values["channel"], values.get("text", ""), values.get("thread_ts", ""), []
        )
        return jsonify({"ok": True, "channel": values["channel"], "ts": ts})

    def _record_message(self, channel: str, text: str, thread_ts: str, files: list) -> str:
        ts = f"{time.time():.6f}"
        self.messages.append(
            {"channel": channel, "text": text, "thread_ts": thread_ts, "files": files, "ts": ts}
        )
        return ts
