"""Group commit (app/core/group_commit.py): concurrent writes share a pipeline, each caller gets its own
answer, and a failure reaches exactly the callers it concerns."""

from __future__ import annotations

import threading
import time

import pytest

from app.core.group_commit import GroupCommit


class Sender:
    """A send() that takes a while, as a round trip to Redis does, and notes each batch."""

    def __init__(self, seconds: float = 0.05, fail_batch: bool = False):
        self.batches: list[list] = []
        self.seconds, self.fail_batch = seconds, fail_batch

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        time.sleep(self.seconds)
        if self.fail_batch:
            raise ConnectionError("Redis went away")
        return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]


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
        thread.join(timeout=10)
    return answers


def test_concurrent_callers_share_batches_and_each_gets_its_own_answer():
    sender = Sender()
    answers = submit_at_once(GroupCommit(sender), list(range(1, 17)))
    assert answers == {item: item * 10 for item in range(1, 17)}
    assert sorted(item for batch in sender.batches for item in batch) == list(range(1, 17)), "each sent once"
    assert len(sender.batches) < 16, "some went together"


def test_a_failed_item_fails_only_its_caller():
    answers = submit_at_once(GroupCommit(Sender()), [1, -2, 3, -4, 5])
    assert {k: v for k, v in answers.items() if k > 0} == {1: 10, 3: 30, 5: 50}
    assert all(isinstance(answers[k], ValueError) and str(answers[k]) == f"bad {k}" for k in (-2, -4))


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_ones_still_go():
    sender = Sender(fail_batch=True)
    commit = GroupCommit(sender)
    answers = submit_at_once(commit, [1, 2, 3, 4])
    assert all(isinstance(answer, ConnectionError) for answer in answers.values())
    sender.fail_batch = False
    assert commit.submit(7) == 70, "nothing is left stuck in flight"


def test_a_quiet_process_sends_each_write_alone():
    sender = Sender(seconds=0)
    commit = GroupCommit(sender)
    assert [commit.submit(n) for n in range(3)] == [0, 10, 20]
    assert sender.batches == [[0], [1], [2]]


def test_batches_are_capped():
    sender = Sender()
    answers = submit_at_once(GroupCommit(sender, most=3), list(range(1, 11)))
    assert len(answers) == 10 and all(len(batch) <= 3 for batch in sender.batches)


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
    answers = submit_at_once(commit, [2])  # would wait forever behind a batch still marked in flight
    assert answers == {2: 2}
