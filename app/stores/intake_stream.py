"""The intake stream: verified webhooks from the API and Slack commands, stored durably before anyone
answers 2xx, until a worker's intake lane (app.work.intake) has done it (or handed it to an RQ job that has).

Webhook intake (and the Slack command acknowledgement, which has 3 seconds) must be cheap and durable:
one Lua script checks the webhook-id (kept 48 h) and appends the event to the stream, and only then does
the web process answer 2xx. Slack commands go the same way, deduplicated by trigger_id.
See docs/decisions/0004-intake-stream.md for why not an RQ enqueue per request.
"""

from __future__ import annotations

import json
from enum import IntEnum

from redis import Redis

from app.core.ids import digest
from app.stores.budgets import BudgetScopes
from app.stores.consumer_group import GroupStream, let_go
from app.stores.primary import Primary

GROUP = "relay-intake"

# KEYS: dedupe key, stream. ARGV: ttl, tenant id, task id, webhook id, body.
_INTAKE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'tenant', ARGV[2], 'task', ARGV[3], 'webhook', ARGV[4], 'body', ARGV[5])
return 1
"""


# KEYS: dedupe key, stream, budgets hash (or the stream again). ARGV: ttl, job name, request (JSON),
# the budget fields to look at. A capped budget among them: 2, nothing stored (the caller checks it).
_COMMAND = """
for i = 4, #ARGV do
  local budget = redis.call('HGET', KEYS[3], ARGV[i])
  if budget and cjson.decode(budget)['hard_cap'] == true then return 2 end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'kind', 'slack', 'job', ARGV[2], 'request', ARGV[3], 'dedupe', KEYS[1])
return 1
"""


class Taken(IntEnum):
    """What storing a Slack command came to."""

    SEEN = 0
    """Stored before: a retry of the same command."""
    STORED = 1
    CAPPED = 2
    """Not stored: a capped budget applies, to be checked first."""


class IntakeStream(GroupStream):
    group = GROUP

    def __init__(self, redis: Redis, prefix: str, primary: Primary, dedupe_ttl_seconds: int):
        super().__init__(redis, prefix + "intake")
        self._prefix, self._primary, self._dedupe_ttl = prefix, primary, dedupe_ttl_seconds

    def record_event(self, tenant_id: str, task_id: str, webhook_id: str, body: str) -> bool:
        """Durably store a verified event and queue its processing, atomically. False: seen before."""
        dedupe = f"{self._prefix}webhook:{tenant_id}:{digest(webhook_id, 40)}"
        args = [self._dedupe_ttl, tenant_id, task_id, webhook_id, body]
        # a redelivery waits too: the first copy's write may not have reached the replicas yet
        return self._primary.run_replicated("intake", _INTAKE, [dedupe, self.key], args) == 1

    def record_command(
        self, job: str, request: dict, command_id: str, unless_capped: BudgetScopes | None = None
    ) -> Taken:
        """Durably queue a Slack command's work (``job`` of app.domain.slack.background), once per
        ``command_id``, unless a capped budget of ``unless_capped`` exists."""
        dedupe = f"{self._prefix}slack:command:{digest(command_id, 40)}"
        budgets = unless_capped.key if unless_capped else self.key
        keys = [dedupe, self.key, budgets]
        args = [86_400, job, json.dumps(request), *(unless_capped.fields if unless_capped else ())]
        return Taken(self._primary.run_replicated("slack-command", _COMMAND, keys, args))

    def acknowledge(self, entry_id: str) -> None:
        """The entry's work is done (called by the job itself): it leaves the stream."""
        if entry_id:
            let_go(self._redis, self.key, GROUP, entry_id)
