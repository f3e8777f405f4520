"""Group commit (app/core/group_commit.py): concurrent writes share a pipeline, each caller gets its own
answer, and a failure reaches exactly the callers it concerns."""

from __future__ import annotations

import threading

import pytest

from app.core.group_commit import GroupCommit
from tests.support.servers import eventually


class Sender:
    """A send() that notes each batch; with ``hold_first_until``, the first batch stays in flight until that
    many callers wait behind it (as they would behind a slow round trip to Redis), so they go together."""

    def __init__(
        self, fail_batch: bool = False, hold_first_until: int = 0, commit: GroupCommit | None = None
    ):
        self.batches: list[list] = []
        self.fail_batch, self.hold_first_until, self.commit = fail_batch, hold_first_until, commit

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if len(self.batches) == 1 and self.hold_first_until:
            eventually(
                lambda: len(self.commit._waiting) >= self.hold_first_until,
                60,
                f"{self.hold_first_until} callers waiting behind the batch in flight",
                show=lambda: f"{len(self.commit._waiting)} waiting",
                every=0.005,
            )
        if self.fail_batch:
            raise ConnectionError("Redis went away")
        return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]


def held_commit(waiting: int, most: int = 64) -> tuple[GroupCommit, Sender]:
    """A GroupCommit whose first batch is held in flight until ``waiting`` callers queue behind it."""
    sender = Sender(hold_first_until=waiting)
    sender.commit = GroupCommit(sender, most=most)
    return sender.commit, sender


def submit_at_once(commit: GroupCommit, items: list[int]) -> dict[int, object]:
    answers: dict[int, object] = {}
    start = threading.Barrier(len(items))

    def call(item: int) -> None:
        start.wait()
        try:
            answers[item] = commit.submit(item)
        except Exception as exc:
            answers[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stuck = [item for item, thread in zip(items, threads, strict=True) if thread.is_alive()]
    assert not stuck, f"callers still waiting for their answer: {stuck}"
    return answers


def test_concurrent_callers_share_batches_and_each_gets_its_own_answer():
    commit, sender = held_commit(waiting=15)
    answers = submit_at_once(commit, list(range(1, 17)))
    assert answers == {item: item * 10 for item in range(1, 17)}
    [first], rest = sender.batches
    assert sorted(rest) == sorted(set(range(1, 17)) - {first}), (
        "the 15 that waited went together, each once"
    )


def test_a_failed_item_fails_only_its_caller():
    commit, _ = held_commit(waiting=4)  # the bad ones share a batch with good ones
    answers = submit_at_once(commit, [1, -2, 3, -4, 5])
    assert {k: v for k, v in answers.items() if k > 0} == {1: 10, 3: 30, 5: 50}
    assert all(
        isinstance(answers[k], ValueError) and str(answers[k]) == f"bad {k}" for k in (-2, -4)
    )


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_ones_still_go():
    commit, sender = held_commit(waiting=3)
    sender.fail_batch = True
    answers = submit_at_once(commit, [1, 2, 3, 4])
    assert all(isinstance(answer, ConnectionError) for answer in answers.values())
    assert [len(batch) for batch in sender.batches] == [1, 3], (
        "the failed batch's callers, and the next ones'"
    )
    sender.fail_batch = False
    assert commit.submit(7) == 70, "nothing is left stuck in flight"


def test_a_quiet_process_sends_each_write_alone():
    sender = Sender()
    commit = GroupCommit(sender)
    assert [commit.submit(n) for n in range(3)] == [0, 10, 20]
    assert sender.batches == [[0], [1], [2]]


def test_batches_are_capped():
    commit, sender = held_commit(waiting=9, most=3)
    answers = submit_at_once(commit, list(range(1, 11)))
    assert answers == {item: item * 10 for item in range(1, 11)}
    assert [len(batch) for batch in sender.batches] == [1, 3, 3, 3], (
        "nine waiting go three at a time"
    )


def test_an_interrupt_while_sending_reaches_its_caller_and_leaves_nothing_in_flight():
    calls = []

    def send(items):
        calls.append(items)
        if len(calls) == 1:
            raise KeyboardInterrupt()
        return items

    commit = GroupCommit(send)
    with pytest.raises(KeyboardInterrupt):
        commit.submit(1)
    # would wait forever behind a batch still marked in flight
    answers = submit_at_once(commit, [2])
    assert answers == {2: 2}
