"""bench.ab's table: medians of each side's ratios, their spread, and head / base."""

from __future__ import annotations

from pathlib import Path

from bench.ab import Side, table


def test_the_table_sets_each_rows_median_ratios_side_by_side() -> None:
    base = Side("base", Path("."), "python", {"hit": [0.5, 0.7, 0.6], "gone": [1.0]})
    head = Side("head", Path("."), "python", {"hit": [0.66, 0.63, 0.9], "new": [2.0]})
    lines = table(base, head)
    assert lines[2] == "| hit | 0.600 (0.500-0.700) | 0.660 (0.630-0.900) | 1.100 |"
    assert lines[-1].endswith("gone, new")  # rows on one side are named, not compared
    assert len(lines) == 4


def test_cpu_seconds_counts_the_process_own_work_not_its_waiting() -> None:
    import os
    import time

    from bench.cpu_calls import cpu_seconds

    start = cpu_seconds(os.getpid())
    time.sleep(0.3)  # waiting: no CPU
    slept = cpu_seconds(os.getpid()) - start
    busy_until = time.process_time() + 0.3
    while time.process_time() < busy_until:
        pass
    worked = cpu_seconds(os.getpid()) - start - slept
    assert slept < 0.1
    assert 0.2 < worked < 1.0
