"""The relay on Redis Sentinel, with real processes: a primary, two replicas and three sentinels from Debian's
redis-server, on loopback ports of their own. Every RQ path the relay uses works on a Sentinel connection,
and after the primary dies the relay finds the new one by itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rq.registry import FinishedJobRegistry
from standardwebhooks import Webhook

from app.cli.devstack import free_port, stop_processes, wait_until_up
from app.core import redis_connection
from app.core.config import RelayConfig
from app.core.ids import digest
from app.stores import queues
from tests.chaos.test_redis_restart import _event, rq_jobs_of, still_in_the_intake_stream
from tests.support.keys import redis_key
from tests.support.sentinel import MASTER, SentinelGroup
from tests.support.servers import ServedApp, WebhookReceiver, eventually


@pytest.fixture
def sentinels():
    """First in each test's arguments: set up before the relay, so it is stopped after the relay's processes
    (which would otherwise spend their stop retrying a Redis that is gone)."""
    group = SentinelGroup(Path(tempfile.mkdtemp(prefix="relay-sentinel-"))).start()
    yield group
    group.stop()


def on_sentinels(make_relay, group: SentinelGroup, **overrides):
    # a delivery whose lane entry went with a primary that had not passed it on (RELAY_REDIS_MIN_REPLICAS=0)
    # is found by the reconciler once it is overdue by delivery_recheck_seconds: 120 s by default, longer
    # than the storm test waits on a busy machine
    overrides.setdefault("delivery_recheck_seconds", 15)
    # a task's end the killed primary had not passed on is polled again once the task has been quiet this long
    overrides.setdefault("reconcile_quiet_seconds", 15)
    database = overrides.pop("database", 0)
    return make_relay(
        redis_url=f"redis://sentinel-named/{database}",
        redis_sentinels=group.sentinel_hosts,
        redis_master_name=MASTER,
        redis_failover_seconds=20,
        **overrides,
    )


def test_every_rq_path_works_on_a_sentinel_connection(sentinels, make_relay, receiver):
    """The worker and its built-in scheduler (a delivery's retry is an `enqueue_in` job), the cron scheduler
    (the reconciler), the delivery lane and the intake lane, all through the sentinels."""
    receiver.script = [503]  # the first attempt fails: its retry is a job RQ's scheduler releases
    relay = on_sentinels(make_relay, sentinels, worker=False)
    assert relay.ctx.redis.connection_pool.service_name == MASTER
    relay.start_worker()
    relay.start_scheduler()
    client = relay.client()
    task = relay.submit(
        client,
        prompt="On sentinels",
        destinations=[{"kind": "webhook", "config": {"url": receiver.url}}],
    )
    view = relay.wait_task(client, task["task_id"], timeout=60)
    assert view["status"] == "completed"

    def delivered():  # the task ends first; its follow-ups plan the delivery right after
        planned = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
        return planned[0] if planned and planned[0]["state"] == "delivered" else None

    delivery = eventually(delivered, 60, "the delivery's retry")
    assert delivery["attempts"] == 2 and len(receiver.requests) == 2
    reconciled = FinishedJobRegistry(queues.RECONCILE, connection=relay.ctx.rq_redis)
    eventually(lambda: reconciled.get_job_ids(), 30, "the cron scheduler's reconciler to run")
    primary = sentinels.primary()
    assert primary.client().dbsize() > 0, "the data is on the primary the sentinels name"


def test_rq_dashboard_reads_the_queues_through_the_sentinels(sentinels, make_relay):
    """rq-dashboard gets a `redis+sentinel://` URL (it takes no client): it lists the relay's queues, with the
    job the relay queued on the primary the sentinels name."""
    token = "sentinel-dashboard-token-0f4e8c2b7a91d3"
    relay = on_sentinels(make_relay, sentinels, worker=False, admin_token=token)
    relay.ctx.queues.get(queues.RECONCILE).enqueue(queues.job("reconcile"))
    browser = httpx.Client(base_url=relay.url, follow_redirects=True)
    login = browser.get("/dashboard/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    browser.post("/dashboard/login", data={"token": token, "csrf_token": csrf}).raise_for_status()
    listed = browser.get("/dashboard/rq/0/data/queues.json")
    assert listed.status_code == 200, listed.text
    counts = {queue["name"]: queue["count"] for queue in listed.json()["queues"]}
    assert counts.get(queues.RECONCILE) == 1


def test_rate_limits_count_in_the_primary_the_sentinels_name(sentinels, make_relay):
    """limits reads a sentinel URL's whole path as the primary's name: ``relay/0`` found no primary, and the
    API's limiter, which swallows storage errors, limited nothing. The per-key limit and the dashboard's
    sign-in throttle both count, on the sentinels' primary."""
    token = "sentinel-dashboard-token-0f4e8c2b7a91d3"
    relay = on_sentinels(
        make_relay,
        sentinels,
        worker=False,
        admin_token=token,
        rate_limit="3 per hour",
        admin_login_limit="1 per hour",
    )
    with relay.client() as client:
        assert [client.get("/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]
    browser = httpx.Client(base_url=relay.url)
    statuses = []
    for guess in ("not-the-token", token):
        login = browser.get("/dashboard/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        answer = browser.post("/dashboard/login", data={"token": guess, "csrf_token": csrf})
        statuses.append(answer.status_code)
    assert statuses == [401, 429]
    assert any(b"ratelimit" in key for key in sentinels.primary().client().scan_iter("*"))


def test_a_command_waiting_on_a_hung_primary_is_answered_by_the_new_one(sentinels):
    """A write sent to a primary that then hangs is not answered by it when it wakes after the failover (it
    would still think itself primary for a moment, and the write would vanish when it resyncs): the sentinels'
    failover events close the connection, and redis-py sends the write again, to the new primary."""
    config = RelayConfig(
        redis_url="redis://sentinel-named/0",
        redis_sentinels=sentinels.sentinel_hosts,
        redis_master_name=MASTER,
        redis_failover_seconds=30,
    )
    client = redis_connection.connect(config, decode=True, socket_timeout=30)
    client.set("warm", "1")  # a connection is open, and the failover watch listening
    sent = _note_sends(client)
    events = sentinels.failover_events()
    old = sentinels.primary()
    sentinels.pause(old)
    answers: list[int] = []
    writer = threading.Thread(target=lambda: answers.append(client.incr("counter")))
    writer.start()
    assert sent.wait(120), "the write was never sent"  # to the hung primary: the switch comes after
    sentinels.wait_for_switch(events)
    sentinels.resume(old)
    writer.join(timeout=300)
    assert not writer.is_alive(), "the write never returned"
    new = sentinels.primary()
    assert new.port != old.port
    assert answers == [1] and new.client().get("counter") == b"1", (
        "the write the client saw is on the new primary"
    )


def _note_sends(client) -> threading.Event:
    """An event set once the client's connection has sent a command (the pool hands the same one out again)."""
    sent, pool = threading.Event(), client.connection_pool
    connection = pool.get_connection()
    pool.release(connection)
    send = connection.send_packed_command

    def noted(*args, **kwargs):
        send(*args, **kwargs)
        sent.set()

    connection.send_packed_command = noted
    return sent


WEBHOOKS, SENDERS, DOCUMENTS = 1500, 4, 150
FAULTS = (
    ("kill-9", "Redis primary killed (kill -9)", 450),
    ("stop", "Redis primary hung (kill -STOP until every sentinel switched, then SIGCONT)", 975),
)
"""Each fault, as the report names it, and where the storm pauses before it (the fault comes ``FLOWING``
webhooks after the storm goes on again)."""
FLOWING = 20
# 150 documents x (folder + hook subscriber) = 300 deliveries; a third is submitted before the storm, a third as
# each fault comes. The storm's first event for each of its 20 target tasks ends that task too, and its hook
# delivery is the 20 more the subscriber gets.
TARGETS = 20


class Storm:
    """Signed webhooks from 4 senders that retry anything but 2xx, as the API does; it records the order they
    were acknowledged in, and when each 5xx or connection error came (for the report). It pauses as each of
    ``pauses`` is acknowledged, until ``go_on()``: each fault comes as the storm goes on from its pause, at the
    same point of two storms of unlike speed, and after the group is whole again from the fault before."""

    def __init__(self, url_for, signer: Webhook, pauses: list[int]):
        self.url_for, self.signer, self._pauses = url_for, signer, list(pauses)
        self.pause_at = self._pauses.pop(0)
        self.acked: list[str] = []
        self.errors: list[float] = []
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._send, args=(range(i, WEBHOOKS, SENDERS),), daemon=True)
            for i in range(SENDERS)
        ]

    def start(self) -> Storm:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout=timeout)
        assert not any(t.is_alive() for t in self._threads), (
            f"the storm's senders still run: {len(self.acked)} of {WEBHOOKS} webhooks acknowledged"
        )

    def go_on(self) -> None:
        self.pause_at = self._pauses.pop(0) if self._pauses else WEBHOOKS
        self._open.set()

    def _send(self, numbers: range) -> None:
        with httpx.Client(timeout=30) as client:
            for n in numbers:
                self._open.wait()
                webhook_id, body = f"msg_{n:09d}", json.dumps(_event(n))
                while True:
                    stamp = datetime.now(UTC)
                    headers = {
                        "webhook-id": webhook_id,
                        "webhook-timestamp": str(int(stamp.timestamp())),
                        "webhook-signature": self.signer.sign(webhook_id, stamp, body),
                        "content-type": "application/json",
                    }
                    try:
                        if (
                            client.post(self.url_for(n), content=body, headers=headers).status_code
                            == 200
                        ):
                            break
                    except httpx.HTTPError:
                        pass
                    with self._lock:
                        self.errors.append(time.monotonic())
                    time.sleep(0.1)  # the API's own pause before it sends again
                with self._lock:
                    self.acked.append(webhook_id)
                    if len(self.acked) >= self.pause_at:
                        self._open.clear()


def _submit_until_acknowledged(
    client: httpx.Client, n: int, retried: list[float], patience: float = 600.0
) -> dict:
    """A submit as a client is told to make it: a 503 (storage unavailable, or not yet confirmed by a replica
    during the failover) or a 409 (the same Idempotency-Key still held by an attempt the failover cut short)
    is tried again after its Retry-After, with the same key. A submit that was not confirmed may still have
    been kept, so a retry can make a second document: each retry's time.monotonic() goes in ``retried``."""
    body = {
        "format": "excel",
        "prompt": f"Failover {n}",
        "destinations": [{"kind": "folder", "config": {"path": "failover"}}],
    }
    deadline = time.monotonic() + patience
    while True:
        response = client.post(
            "/v1/documents", json=body, headers={"Idempotency-Key": f"failover-{n}"}
        )
        if response.status_code not in (409, 503) or time.monotonic() > deadline:
            assert response.status_code in (200, 202), response.text
            return response.json()
        retried.append(time.monotonic())
        time.sleep(min(5.0, float(response.headers.get("Retry-After") or 1)))  # as the answer asks


@dataclass
class Fault:
    """What a relay had seen when one fault came, and when the new primary was found."""

    name: str
    acked: int
    """Webhooks acknowledged before the fault: one of them may be lost with it, none acknowledged later."""
    documents: int
    """Documents acknowledged before the fault."""
    faulted_at: float
    seq: int
    """The hook deliveries made before the fault are those numbered below (their order of arrival)."""
    promoted_seq: int = 0
    """...and before the new primary was found: only those may be made again because of this fault."""
    promoted_after: float = 0.0


class StormRun:
    """One relay (its web service with 2 processes, 2 workers and the cron scheduler, in a database of its own
    on the Sentinel group) under a storm of webhooks and submits while the primary fails, twice: what it
    acknowledged, and then what it kept, processed and delivered, for each fault."""

    def __init__(
        self, make_relay, make_sandbox, sentinels: SentinelGroup, min_replicas: int, root: Path
    ):
        self.min_replicas, self.root = min_replicas, root
        # the documents still finish, and deliver, after the fault
        self.sandbox = make_sandbox(task_seconds=0.5)
        self.receiver = WebhookReceiver()
        self._served = ServedApp(self.receiver).start()
        port = free_port()
        self.relay = on_sentinels(
            make_relay,
            sentinels,
            sandbox=self.sandbox,
            worker=False,
            database=min_replicas,
            redis_min_replicas=min_replicas,
            public_url=f"http://127.0.0.1:{port}",
            folder_roots=str(root / "deliveries"),
            # a lane attempt stalled past its worker's lease (this busy machine starting two relays, six
            # Redis servers and a storm) is taken up by another worker and made twice: at-least-once, by
            # design. A lease only a hang outlasts leaves the duplicates the failover itself may cause.
            worker_lease_seconds=30,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.web = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"],
            env=self.relay.env(),
            stdout=(self.relay.log_dir / "web.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.documents: list[dict] = []
        self.retried: list[float] = []
        self.faults: list[Fault] = []
        self._submitters: list[threading.Thread] = []

    def start(self) -> StormRun:
        """Its processes, its hook subscriber, the first third of its documents, and its storm."""
        relay = self.relay
        wait_until_up(f"{self.url}/healthz", processes=[self.web])
        for _ in range(2):
            relay.start_worker()
        relay.start_scheduler()
        self.client = httpx.Client(
            base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {relay.api_key}"}
        )
        self.client.post(
            "/v1/hooks", json={"target_url": self._served.url + "/hook", "event": "task.completed"}
        ).raise_for_status()
        self._submit(range(DOCUMENTS // 3))
        targets = [
            relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="x").task_id
            for _ in range(TARGETS)
        ]
        tokens = [relay.ctx.tokens.webhook(relay.tenant_id, task_id) for task_id in targets]
        url = f"{self.url}/webhooks/upstream/"
        self.storm = Storm(
            lambda n: url + tokens[n % len(tokens)],
            Webhook(self.sandbox.webhook_secret),
            pauses=[acked for _, _, acked in FAULTS],
        ).start()
        return self

    def _submit(self, numbers: range) -> None:
        with httpx.Client(base_url=self.url, headers=self.client.headers, timeout=60) as own:
            for n in numbers:
                self.documents.append(_submit_until_acknowledged(own, n, self.retried))

    def faulted(self, name: str, at: float) -> None:
        """A fault came: the next third of the documents goes in."""
        self.faults.append(
            Fault(name, len(self.storm.acked), len(self.documents), at, self.receiver.arrived)
        )
        third = len(self.faults)
        submitter = threading.Thread(
            target=self._submit,
            daemon=True,
            args=(range(DOCUMENTS * third // 3, DOCUMENTS * (third + 1) // 3),),
        )
        submitter.start()
        self._submitters.append(submitter)

    def promoted(self, after: float) -> None:
        self.faults[-1].promoted_seq, self.faults[-1].promoted_after = self.receiver.arrived, after

    def settle(self) -> None:
        """Every webhook and document acknowledged in the end; every stored webhook processed; every kept
        document delivered to the folder and the subscriber."""
        relay = self.relay
        self.storm.join(timeout=600)
        for submitter in self._submitters:
            submitter.join(timeout=900)
        assert len(self.documents) == DOCUMENTS, (
            f"{len(self.documents)} of {DOCUMENTS} documents submitted in the end"
        )

        def dedupe_key(webhook_id: str) -> str:
            return redis_key(relay.ctx, "webhook", relay.tenant_id, digest(webhook_id, 40))

        def unprocessed(among) -> list[str]:
            waiting = still_in_the_intake_stream(relay.ctx)
            return [w for w in among if w in waiting]

        # lost at once: acknowledged, yet the intake's own write is not on the primary now (it had not reached a
        # replica when the primary went); stored ones must all be processed in the end (entries a worker had
        # taken when the primary died, or handed to RQ jobs lost with it, are taken up after a reclaim period)
        pipe = relay.ctx.redis.pipeline(transaction=False)
        for webhook_id in self.storm.acked:
            pipe.exists(dedupe_key(webhook_id))
        # places in the order acked
        self.vanished = [n for n, kept in enumerate(pipe.execute()) if not kept]
        stored = [w for n, w in enumerate(self.storm.acked) if n not in set(self.vanished)]
        eventually(
            lambda: not unprocessed(stored),
            600,
            "every stored webhook to be processed",
            every=1,
            show=lambda: (
                f"not processed: {len(unprocessed(stored))}; handed to RQ (id, status, error): "
                f"{rq_jobs_of(relay, unprocessed(stored))}"
            ),
        )

        # a submit acknowledged just before the primary died can go with it when nothing waits for a replica
        kept = {
            task.task_id for task in relay.ctx.tasks.many([d["task_id"] for d in self.documents])
        }
        self.lost_documents = [n for n, d in enumerate(self.documents) if d["task_id"] not in kept]
        self.kept = [d["task_id"] for d in self.documents if d["task_id"] in kept]
        folder = self.root / "deliveries" / relay.tenant_id / "failover"
        # cheap signs first (files, hook requests), then the states, read from Redis
        eventually(
            lambda: (
                folder.exists()
                and len(list(folder.iterdir())) >= len(self.kept)
                and len({r.headers["Webhook-Id"] for r in self.receiver.requests})
                >= len(self.kept) + TARGETS
            ),
            600,
            "a file and a hook delivery for each kept document",
            every=1,
            show=lambda: (
                f"{len(list(folder.iterdir())) if folder.exists() else 0} files, "
                f"{len(self.receiver.requests)} hook requests; tasks whose follow-ups have not "
                f"run (id, status, fanout): {self._follow_ups_pending()[:10]}"
            ),
        )
        self.states = eventually(
            self._all_delivered,
            600,
            "every delivery to land",
            every=2,
            show=lambda: f"not delivered: {self._undelivered()[:10]}",
        )
        self.files = list(folder.iterdir())

    def _follow_ups_pending(self) -> list[tuple]:
        return [
            (task.task_id, task.status, task.fanout)
            for task in self.relay.ctx.tasks.many(self.kept)
            if task.fanout != "done"
        ]

    def _all_delivered(self) -> Counter | None:
        states = Counter(d["state"] for d in self.relay.deliveries_of(self.kept))
        return states if states == {"delivered": 2 * len(self.kept)} else None

    def _undelivered(self) -> list[dict]:
        return [d for d in self.relay.deliveries_of(self.kept) if d["state"] != "delivered"]

    def check(self) -> None:
        """What was lost and duplicated, as the setting promises; each loss and repeat is put to the fault it
        came with (what was acknowledged, or first delivered, before that fault and after the one before)."""
        hook_ids = Counter(r.headers["Webhook-Id"] for r in self.receiver.requests)
        # a lost document may have delivered before the primary went, so it counts at most once
        assert len(self.kept) <= len(self.files) <= DOCUMENTS + len(self.retried)
        assert (
            len(self.kept) + TARGETS <= len(hook_ids) <= DOCUMENTS + TARGETS + len(self.retried)
        ), "each document's hook"
        first: dict[str, int] = {}
        for r in self.receiver.requests:
            first.setdefault(r.headers["Webhook-Id"], r.seq)
        again = {
            hook_id: (count, first[hook_id]) for hook_id, count in hook_ids.items() if count > 1
        }
        self.lost, self.duplicated = {}, {}
        for fault, before in zip(self.faults, [None, *self.faults], strict=False):
            self.lost[fault.name] = [
                n for n in self.vanished if (before.acked if before else 0) <= n < fault.acked
            ]
            self.duplicated[fault.name] = sum(
                count - 1
                for count, seq in again.values()
                if (before.promoted_seq if before else 0) <= seq < fault.promoted_seq
            )
        if self.min_replicas:
            assert self.vanished == [], (
                f"acknowledged webhooks lost (places in the order acked): {self.vanished}"
            )
            assert self.lost_documents == [], f"acknowledged submits lost: {self.lost_documents}"
            assert again == {}, (
                f"hook deliveries made more than once (count, first arrival): {again}"
            )
        else:  # what the old primary had not passed on went with it: a webhook acknowledged before that fault, a
            # delivery first made before the new primary was found (its outcome could be on the old one only),
            # made again once
            assert len(self.vanished) == sum(map(len, self.lost.values())), (
                f"webhooks lost though acknowledged after the last fault: {self.vanished}"
            )
            late = {
                h: (count, seq)
                for h, (count, seq) in again.items()
                if count != 2 or seq >= self.faults[-1].promoted_seq
            }
            assert late == {}, (
                f"made again, not for an outcome an old primary took with it (count, first seq; "
                f"the new primaries were found at {[f.promoted_seq for f in self.faults]}): {late}"
            )

    def report(self, reliability) -> None:
        for fault, before, after in zip(
            self.faults, [None, *self.faults], [*self.faults[1:], None], strict=False
        ):
            ends = after.faulted_at if after else float("inf")
            errors = [
                t - fault.faulted_at for t in self.storm.errors if fault.faulted_at <= t < ends
            ]
            retried = [t for t in self.retried if fault.faulted_at <= t < ends]
            submitted_later = {d["task_id"] for d in self.documents[fault.documents :]}
            flowing = min(
                (
                    r.at - fault.faulted_at
                    for r in self.receiver.requests
                    if r.at >= fault.faulted_at
                    and json.loads(r.body).get("data", {}).get("task_id") in submitted_later
                ),
                default=None,
            )
            lost_documents = [
                n
                for n in self.lost_documents
                if (before.documents if before else 0) <= n < fault.documents
            ]
            title = dict((name, text) for name, text, _ in FAULTS)[fault.name]
            reliability(
                fault=f"{title} under Sentinel after {fault.acked} of {WEBHOOKS} webhooks, "
                f"RELAY_REDIS_MIN_REPLICAS={self.min_replicas}",
                tried=WEBHOOKS,
                lost=len(self.lost[fault.name]),
                duplicated=f"{self.duplicated[fault.name]} of {2 * DOCUMENTS} deliveries",
                notes=f"replica promoted after {fault.promoted_after:.1f} s; {len(lost_documents)} of "
                f"{DOCUMENTS} acknowledged submits lost; {len(retried)} submits answered 503 and "
                f"retried; {len(errors)} answers were 5xx or failed connections, over "
                f"{max(errors, default=0):.1f} s; "
                + (
                    f"deliveries flowing {flowing:.1f} s after the fault"
                    if flowing is not None
                    else ""
                )
                + " (one storm, both faults in turn, two relays side by side)",
            )

    def stop(self) -> None:
        stop_processes([self.web], timeout=30)
        self._served.stop()


@pytest.mark.long
def test_the_primary_fails_twice_in_a_storm_and_nothing_acknowledged_is_lost(
    sentinels, make_relay, make_sandbox, tmp_path, reliability
):
    """One storm, two faults in turn (the primary killed, then, with the group whole again, the new primary
    hung), and two relays weathering them side by side, each in a database of its own on the Sentinel group:
    one whose answers wait for a replica (RELAY_REDIS_MIN_REPLICAS=1: nothing acknowledged may be lost or made
    twice) and one whose answers do not (0: what the old primary had not passed on may go with it)."""
    runs = [
        StormRun(
            make_relay,
            make_sandbox,
            sentinels,
            min_replicas,
            tmp_path / f"min-replicas-{min_replicas}",
        )
        for min_replicas in (0, 1)
    ]
    try:
        for run in runs:
            run.start()
        for name, _, pause in FAULTS:
            for run in runs:  # each storm waits at its pause
                eventually(
                    lambda run=run, pause=pause: len(run.storm.acked) >= pause,
                    600,
                    f"{pause} acknowledged webhooks (min replicas {run.min_replicas})",
                )
            for run in runs:
                run.storm.go_on()
            for run in runs:  # and the fault comes in the storm
                eventually(
                    lambda run=run, pause=pause: len(run.storm.acked) >= pause + FLOWING,
                    600,
                    f"the storm going on after {pause} (min replicas {run.min_replicas})",
                )
            old = sentinels.primary()
            events = sentinels.failover_events() if name == "stop" else []
            faulted = time.monotonic()
            for run in runs:
                run.faulted(name, faulted)
            if name == "stop":
                sentinels.pause(old)
                sentinels.wait_for_switch(events)
                new = sentinels.wait_for_new_primary(old)
                # it wakes still thinking itself primary, until the sentinels demote it
                sentinels.resume(old)
            else:
                sentinels.kill(old)
                new = sentinels.wait_for_new_primary(old)
            promoted = time.monotonic() - faulted
            for run in runs:
                run.promoted(promoted)
            assert new.port != old.port
            if name == "kill-9":
                sentinels.rejoin(old)  # the group is whole again for the next fault
        for run in runs:
            run.settle()
        for run in runs:
            run.check()
    finally:
        for run in runs:
            run.stop()
    for run in runs:
        run.report(reliability)
