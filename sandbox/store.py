"""Sandbox state in Redis: organisations and their keys, runs, tasks. Every key under one prefix."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from typing import Any

from redis import Redis

from .clock import Clock
from .ids import new_id

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})

# Set fields on a task unless it already reached a terminal state (or, when ARGV[1] names a status, unless
# it is in another one); drop it from the active set when the new status is terminal. One script, so a
# cancel and a completion can never both win, and two agents can never both claim a queued task. The task's
# phase log (KEYS[3]) gets its new "status|phase|progress" whenever one of them changed; an ended task no longer
# counts in its organisation's active tasks (KEYS[4]). Returns -1 (no such
# task), 0 (refused), 1 (done) or 2 (done, and a cancel was asked for: the agent learns it in the same trip).
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
if current == 'completed' or current == 'failed' or current == 'cancelled' or current == 'expired' then
  return 0
end
if ARGV[1] ~= '' and current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local state = redis.call('HMGET', KEYS[1], 'status', 'phase', 'progress')
local new = state[1]
if new == 'completed' or new == 'failed' or new == 'cancelled' or new == 'expired' then
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'task_id'))
  redis.call('HINCRBY', KEYS[4], redis.call('HGET', KEYS[1], 'org_id'), -1)
end
local entry = new .. '|' .. (state[2] or '') .. '|' .. (state[3] or '')
if redis.call('LINDEX', KEYS[3], -1) ~= entry then redis.call('RPUSH', KEYS[3], entry) end
if redis.call('HEXISTS', KEYS[1], 'cancel_requested') == 1 then return 2 end
return 1
"""

# A new task counts in its organisation's active tasks (KEYS[1]), and raises the high-water mark (KEYS[2]).
_ACTIVE_UP = """
local active = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if active > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], active)
end
return active
"""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class SandboxStore:
    def __init__(self, redis: Redis, prefix: str):
        self.redis = redis
        self.prefix = prefix
        self.clock = Clock(redis, prefix + "clock_offset")
        self._transition = redis.register_script(_TRANSITION)
        self._active_up = redis.register_script(_ACTIVE_UP)
        self._release_signals: dict[str, threading.Event] = {}
        self._signals_lock = threading.Lock()

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- secrets and organisations -----------------------------------------------------------------

    def signing_secret(self, configured: str) -> str:
        if configured:
            return configured
        self.redis.set(self.key("secret"), secrets.token_urlsafe(32), nx=True)
        return str(self.redis.get(self.key("secret")))

    def create_org(
        self, name: str, api_key: str | None = None, webhook_secret: str | None = None
    ) -> dict:
        """Create an organisation with an API key and a ``whsec_`` secret; returns both (shown once)."""
        org_id = new_id("org")
        api_key = api_key or "ovt_test_" + secrets.token_urlsafe(24)
        webhook_secret = webhook_secret or "whsec_" + _b64_secret()
        org = {
            "org_id": org_id,
            "name": name,
            "webhook_secret": webhook_secret,
            "created_at": str(self.clock.now()),
        }
        if not self.redis.set(self.key("apikey", hash_key(api_key)), org_id, nx=True):
            raise ValueError("that API key is already in use")
        pipe = self.redis.pipeline()
        pipe.hset(self.key("org", org_id), mapping=org)
        pipe.sadd(self.key("orgs"), org_id)
        pipe.execute()
        return {**org, "api_key": api_key}

    def org_for_key(self, api_key: str) -> dict | None:
        org_id = self.redis.get(self.key("apikey", hash_key(api_key)))
        return self.get_org(str(org_id)) if org_id else None

    def get_org(self, org_id: str) -> dict | None:
        return self.redis.hgetall(self.key("org", org_id)) or None

    def list_orgs(self) -> list[dict]:
        return [
            o
            for org_id in sorted(self.redis.smembers(self.key("orgs")))
            if (o := self.get_org(org_id))
        ]

    # -- runs ---------------------------------------------------------------------------------------

    def create_run(self, org_id: str, fmt: str, kind: str, prompt: str) -> dict:
        run_id, now = new_id("run"), self.clock.now()
        run = {
            "run_id": run_id,
            "org_id": org_id,
            "format": fmt,
            "kind": kind,
            "prompt": prompt,
            "status": "queued",
            "created_at": now,
            "updated_at": now,
            "last_task_at": now,
            "credits_used": 0,
            "duration_ms": 0,
            "task_count": 0,
            "turn_count": 0,
            "file_name": "",
            "latest_task_id": "",
            "state": json.dumps({"messages": []}),
        }
        seq = self.redis.incr(self.key("run_seq"))
        pipe = self.redis.pipeline()
        pipe.hset(self.key("run", run_id), mapping=run)
        pipe.zadd(self.key("org", org_id, "runs"), {run_id: seq})
        pipe.zadd(self.key("runs", "by_activity"), {run_id: now})
        pipe.execute()
        return self.get_run(run_id) or run

    def get_run(self, run_id: str, org_id: str | None = None) -> dict | None:
        run = self.redis.hgetall(self.key("run", run_id))
        if not run or (org_id is not None and run["org_id"] != org_id):
            return None
        return run

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "last_task_at" in fields:
            self.redis.zadd(
                self.key("runs", "by_activity"), {run_id: float(fields["last_task_at"])}
            )
        self.redis.hset(self.key("run", run_id), mapping={k: _text(v) for k, v in fields.items()})

    def add_run_usage(self, run_id: str, credits: int, duration_ms: int) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key("run", run_id), "credits_used", credits)
        pipe.hincrby(self.key("run", run_id), "duration_ms", duration_ms)
        pipe.execute()

    def page_of_runs(self, org_id: str, after: str | None, count: int) -> list[str]:
        """Run ids of an org, newest first, strictly older than ``after`` when given."""
        key = self.key("org", org_id, "runs")
        if after is None:
            return list(self.redis.zrevrange(key, 0, count - 1))
        score = self.redis.zscore(key, after)
        if score is None:
            return []
        return list(self.redis.zrevrangebyscore(key, f"({int(score)}", "-inf", start=0, num=count))

    def runs_idle_since(self, before: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.key("runs", "by_activity"), "-inf", before))

    # -- tasks --------------------------------------------------------------------------------------

    def create_task(self, run: dict, prompt: str, webhook_url: str | None, base_url: str) -> dict:
        task_id, now = new_id("task"), self.clock.now()
        task = {
            "task_id": task_id,
            "run_id": run["run_id"],
            "org_id": run["org_id"],
            "format": run["format"],
            "kind": run["kind"],
            "prompt": prompt,
            "status": "queued",
            "phase": "preflight",
            "turn_index": "",
            "progress": 0,
            "created_at": now,
            "updated_at": now,
            "webhook_url": webhook_url or "",
            "base_url": base_url,
            "resumed": int(int(run["task_count"]) > 0),
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.key("task", task_id), mapping=task)
        pipe.rpush(self.key("task", task_id, "phases"), _phase_entry(task))
        pipe.zadd(self.key("tasks", "active"), {task_id: now})
        pipe.hincrby(self.key("run", run["run_id"]), "task_count", 1)
        pipe.hset(self.key("run", run["run_id"]), mapping={"status": "queued", "last_task_at": now})
        pipe.zadd(self.key("runs", "by_activity"), {run["run_id"]: now})
        self._active_up(
            keys=[self.key("orgs", "active"), self.key("orgs", "max_active")],
            args=[run["org_id"]],
            client=pipe,
        )
        pipe.execute()
        return self.get_task(task_id) or task

    def org_load(self, org_id: str) -> dict:
        """The organisation's tasks in the API now (queued or running), and the most there ever were at once."""
        active, most = (
            self.redis.hget(self.key("orgs", name), org_id) for name in ("active", "max_active")
        )
        return {"active": int(active or 0), "max_active": int(most or 0)}

    def get_task(self, task_id: str, org_id: str | None = None) -> dict | None:
        task = self.redis.hgetall(self.key("task", task_id))
        if not task or (org_id is not None and task["org_id"] != org_id):
            return None
        return task

    def transition(self, task_id: str, expect: str = "", **fields: Any) -> bool:
        """Update a task unless it already ended (or is not in status ``expect``). False when refused."""
        return self._apply(task_id, expect, fields) >= 1

    def enter_phase(self, task_id: str, **fields: Any) -> tuple[bool, bool]:
        """Update a running task as transition() does; returns (done, whether a cancel was asked for)."""
        outcome = self._apply(task_id, "", fields)
        return outcome >= 1, outcome == 2

    def _apply(self, task_id: str, expect: str, fields: dict) -> int:
        fields.setdefault("updated_at", self.clock.now())
        argv = [expect, *(item for k, v in fields.items() for item in (k, _text(v)))]
        keys = [
            self.key("task", task_id),
            self.key("tasks", "active"),
            self.key("task", task_id, "phases"),
            self.key("orgs", "active"),
        ]
        return int(self._transition(keys=keys, args=argv))

    def phase_log(self, task_id: str) -> list[dict]:
        """Every (status, phase, progress) the task went through, in order, as the sandbox wrote them: a test
        reads the order of phases here instead of racing them with polls."""
        entries = self.redis.lrange(self.key("task", task_id, "phases"), 0, -1)
        return [
            {"status": status, "phase": phase or None, "progress": int(progress)}
            for status, phase, progress in (entry.split("|") for entry in entries)
        ]

    def task_flags(self, task_id: str) -> tuple[str | None, bool]:
        """The task's status (None: no such task) and whether a cancel was asked for, in one round trip."""
        status, cancel_requested = self.redis.hmget(
            self.key("task", task_id), "status", "cancel_requested"
        )
        return status, bool(cancel_requested)

    def request_cancel(self, task_id: str) -> None:
        self.redis.hset(self.key("task", task_id), "cancel_requested", 1)

    def active_tasks(self, created_before: float = float("inf")) -> list[str]:
        top = "+inf" if created_before == float("inf") else created_before
        return list(self.redis.zrangebyscore(self.key("tasks", "active"), "-inf", top))

    # -- export cache -------------------------------------------------------------------------------

    # -- holds (a test control: tasks wait at a phase until their hold is released) -----------------

    def hold(self, name: str, task_id: str) -> None:
        self.redis.sadd(self.key("hold", name, "held"), task_id)

    def unhold(self, name: str, task_id: str) -> None:
        self.redis.srem(self.key("hold", name, "held"), task_id)

    def release(self, name: str) -> None:
        self.redis.set(self.key("hold", name, "released"), 1)
        self.release_signal(name).set()

    def release_signal(self, name: str) -> threading.Event:
        """Set when this process releases ``name``: its held tasks go on at once, without asking Redis."""
        with self._signals_lock:
            return self._release_signals.setdefault(name, threading.Event())

    def released(self, name: str) -> bool:
        return bool(self.redis.exists(self.key("hold", name, "released")))

    def held(self, name: str) -> list[str]:
        return sorted(self.redis.smembers(self.key("hold", name, "held")))

    def cached_export(self, task_id: str, fmt: str) -> str | None:
        return self.redis.get(self.key("export", task_id, fmt))

    def remember_export(self, task_id: str, fmt: str, relative_path: str) -> None:
        self.redis.set(self.key("export", task_id, fmt), relative_path)
        self.redis.incr(self.key("stats", "conversions"))


def _phase_entry(task: dict) -> str:
    return f"{task['status']}|{task['phase']}|{task['progress']}"


def _text(value: Any) -> str | int | float:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return value


def _b64_secret() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()
