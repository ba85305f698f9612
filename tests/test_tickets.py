"""The pure ticket logic: the buy decision, seats, and the summary counted from ledger rows."""

from __future__ import annotations

import pytest

from tasks import tickets


def row(seat, node="n1", pid=1, t=1.0):
    return {"seat": seat, "buyer": f"b{seat}", "node": node, "pid": pid, "time": t}


def test_decide_sells_while_tickets_are_left_and_refuses_at_zero():
    assert tickets.decide({"count": 5}) == {"count": 4}
    assert tickets.decide({"count": 1}) == {"count": 0}
    assert tickets.decide({"count": 0}) is None


def test_seats_start_at_one_and_each_count_read_names_one_seat():
    assert tickets.seat_for(5, 5) == 1
    assert tickets.seat_for(5, 1) == 5
    # one seat per count read, all distinct: two buyers share a seat exactly when they read the same count
    assert [tickets.seat_for(5, count) for count in (5, 4, 3, 2, 1)] == [1, 2, 3, 4, 5]


def test_buyers_are_the_chapters_seven_then_numbered():
    names = tickets.buyer_names(9)
    assert names[:7] == list(tickets.CHAPTER_BUYERS)
    assert names[7:] == ["buyer-8", "buyer-9"]
    assert len(set(tickets.buyer_names(500))) == 500


def test_summary_of_the_chapters_lost_updates_counts_oversell_and_double_seats():
    # 7 buyers all read count == 5: all take seat 1, all write 4
    summary = tickets.summarize([row(1, pid=p) for p in range(7)], [], stock=5, buyers=7, final_counter=4)
    assert summary["sold"] == 7
    assert summary["oversold"] == 2
    assert summary["seats_sold_twice"] == 1
    assert summary["seats_sold_twice_detail"] == {"1": 7}
    assert summary["extra_sales_on_taken_seats"] == 6
    assert summary["lost_updates"] == 6
    assert summary["correct"] is False


def test_summary_of_a_correct_sale():
    sales = [row(s, node="n1" if s % 2 else "n2") for s in range(1, 6)]
    failures = [{"buyer": "x", "reason": "sold out", "time": 2.0}, {"buyer": "y", "reason": "sold out"}]
    summary = tickets.summarize(sales, failures, stock=5, buyers=8, final_counter=0)
    assert summary["sold"] == 5 and summary["oversold"] == 0 and summary["seats_sold_twice"] == 0
    assert summary["failed_buyers"] == 2 and summary["missing_buyers"] == 1
    assert summary["sold_per_node"] == {"n1": 3, "n2": 2}
    assert summary["failure_reasons"] == {"sold out": 2}
    assert summary["correct"] is True


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        tickets.check_mode("yolo", tickets.REDIS_MODES)
    assert tickets.check_mode("atomic", tickets.REDIS_MODES) == "atomic"
