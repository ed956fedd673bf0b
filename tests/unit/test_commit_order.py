"""The order of a file's commits in the agent: numbered as they arrive, a commit that a later
one overtook (its worker finished after the later commit renamed) is dropped, so the file never
goes back to older content; a failed rename does not count, and a file is forgotten with its
last write-back."""

from __future__ import annotations

import pytest

from podside_agent.files import CommitOrder

FILE = (1, 2, "config.json")


def _rename(order: CommitOrder, number: int, key: object = FILE) -> bool:
    """One commit's turn: whether it would rename."""
    with order.turn(key, number) as newest:
        return newest


def test_a_commit_that_finishes_after_a_later_one_renamed_is_dropped() -> None:
    order = CommitOrder()
    order.hold(FILE)
    order.hold(FILE)
    timed_out, later = order.number(), order.number()
    assert _rename(order, later)
    assert not _rename(order, timed_out)


def test_commits_that_finish_in_their_order_all_rename() -> None:
    order = CommitOrder()
    order.hold(FILE)
    order.hold(FILE)
    first, second = order.number(), order.number()
    assert _rename(order, first)
    assert _rename(order, second)


def test_a_rename_that_failed_does_not_overtake_anyone() -> None:
    order = CommitOrder()
    order.hold(FILE)
    order.hold(FILE)
    earlier, failing = order.number(), order.number()
    with pytest.raises(OSError), order.turn(FILE, failing):
        raise OSError("the rename failed")
    assert _rename(order, earlier)


def test_other_files_are_not_ordered_with_this_one() -> None:
    order = CommitOrder()
    other = (1, 2, "other.json")
    order.hold(FILE)
    order.hold(other)
    earlier, later = order.number(), order.number()
    assert _rename(order, later, other)
    assert _rename(order, earlier)


def test_a_file_is_forgotten_with_its_last_write_back() -> None:
    order = CommitOrder()
    order.hold(FILE)
    order.hold(FILE)
    assert _rename(order, order.number())
    order.release(FILE)
    assert _rename(order, order.number())  # one write-back of it still lives
    order.release(FILE)
    with pytest.raises(KeyError):
        _rename(order, order.number())
