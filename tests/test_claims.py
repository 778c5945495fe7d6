"""Cell claims (bench/claims.py) and shard slices (bench/grid.py shard_keys), without a grid."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

import bench.claims
from bench.claims import CellClaims, Holder, process_start, read_holder, this_process
from bench.grid import shard_keys

KEYS = list(itertools.product(["base", "average", "loraflow"], ["math", "code"], ["zh", "es"], [0, 1, 2]))


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 36, 40])
def test_shards_are_disjoint_balanced_and_cover_the_grid(count):
    slices = [shard_keys(KEYS, (index, count)) for index in range(count)]
    assert sorted(key for piece in slices for key in piece) == sorted(KEYS)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    for method in ("base", "average", "loraflow"):  # each method's cells (12) spread evenly while count <= 12
        per_shard = [sum(key[0] == method for key in piece) for piece in slices]
        assert max(per_shard) - min(per_shard) <= 1 or count > 12
    for piece in slices:  # the grid's own order within a slice
        assert piece == [key for key in KEYS if key in piece]


def test_shards_do_not_depend_on_the_order_of_the_options():
    shuffled = KEYS[:]
    random.Random(0).shuffle(shuffled)
    for index in range(4):
        assert set(shard_keys(shuffled, (index, 4))) == set(shard_keys(KEYS, (index, 4)))
    assert shard_keys(KEYS, None) == KEYS


def write_claim(path, holder: Holder, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_claim_names_its_holder_and_refuses_a_second_claimant_until_released(tmp_path):
    path = tmp_path / "claims" / "suite" / "base" / "math-zh-seed0.claim"
    claim = CellClaims().acquire(path)
    holder = read_holder(path)
    assert holder.host == socket.gethostname() and holder.pid == os.getpid() and holder.process_start
    assert CellClaims().acquire(path) is None  # a live holder (this very process)
    claim.release()
    assert not path.exists()
    again = CellClaims().acquire(path)
    assert again is not None and path.exists()
    again.release()


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "cell.claim"
    write_claim(path, replace(this_process(), pid=dead_pid()))
    claims = CellClaims()
    claim = claims.acquire(path)
    assert claim is not None and read_holder(path).pid == os.getpid()
    assert len(claims.taken_over) == 1 and "is dead" in claims.taken_over[0]
    claim.release()


def test_a_killed_but_unreaped_holder_counts_as_dead(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / "cell.claim"
        write_claim(path, replace(this_process(), pid=process.pid, process_start=process_start(process.pid)))
        assert CellClaims().acquire(path) is None  # alive
        process.kill()
        while process_start(process.pid) is not None:  # a zombie until waited for
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{process.pid}")
        assert CellClaims().acquire(path) is not None
    finally:
        process.wait()


def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path):
    path = tmp_path / "cell.claim"
    write_claim(path, replace(this_process(), process_start="1"))  # this pid, but a process started at another tick
    assert CellClaims().acquire(path) is not None


def test_a_claim_from_another_host_is_stale_only_after_the_timeout(tmp_path):
    elsewhere = Holder("another-host", 1, "5", time.time() - 7200)
    fresh, old = tmp_path / "fresh.claim", tmp_path / "old.claim"
    write_claim(fresh, elsewhere, age=60)
    write_claim(old, elsewhere, age=7200)
    claims = CellClaims(timeout=3600)
    assert claims.acquire(fresh) is None
    assert claims.acquire(old) is not None
    assert "heartbeat is 7200 s old" in claims.taken_over[0] and "another-host" in claims.taken_over[0]
    assert "pid 1 on another-host" in CellClaims().holder(fresh)


def test_a_claim_being_written_counts_as_live_until_its_timeout(tmp_path):
    path = tmp_path / "cell.claim"
    path.write_text("")  # created, its holder not yet written
    assert CellClaims(timeout=60).acquire(path) is None
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert CellClaims(timeout=60).acquire(path) is not None


def test_the_heartbeat_keeps_a_long_cell_claimed(tmp_path):
    path = tmp_path / "cell.claim"
    claim = CellClaims(timeout=0.8).acquire(path)  # heartbeat every 0.2 s
    os.utime(path, (time.time() - 10, time.time() - 10))
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 0.5
    assert CellClaims(timeout=0.8).acquire(path) is None
    claim.release()


def test_release_leaves_a_claim_that_another_run_took_over(tmp_path):
    path = tmp_path / "cell.claim"
    claim = CellClaims().acquire(path)
    path.unlink()  # what a run that judged this claim stale does ...
    successor = CellClaims().acquire(path)  # ... before it claims the cell itself
    claim.release()
    assert path.exists()
    successor.release()
    assert not path.exists()


def test_a_fresh_break_file_stops_a_second_run_breaking_the_same_claim(tmp_path):
    path = tmp_path / "cell.claim"
    write_claim(path, replace(this_process(), pid=dead_pid()))
    breaker = tmp_path / "cell.claim.break"
    breaker.write_text("")
    assert CellClaims().acquire(path) is None  # another run is taking it over right now
    os.utime(breaker, (time.time() - 120, time.time() - 120))  # left by a run killed while breaking it
    assert CellClaims().acquire(path) is not None and not breaker.exists()


def _race_for(path, start, results) -> None:
    while time.time() < start:
        pass
    claim = CellClaims().acquire(path)
    results.put(claim is not None)
    time.sleep(0.5)  # hold it while the others try
    if claim is not None:
        claim.release()


def test_many_runs_racing_for_a_dead_runs_claim_give_it_to_exactly_one(tmp_path, monkeypatch):
    judge = bench.claims.stale_reason

    def slow_judge(path, timeout):  # widen the window between finding a claim stale and removing it
        reason = judge(path, timeout)
        time.sleep(0.2)
        return reason

    monkeypatch.setattr(bench.claims, "stale_reason", slow_judge)
    context = multiprocessing.get_context("fork")  # the racers inherit the slow judge
    for attempt in range(3):
        path = tmp_path / f"cell{attempt}.claim"
        write_claim(path, replace(this_process(), pid=dead_pid()))
        results, start = context.Queue(), time.time() + 0.5
        racers = [context.Process(target=_race_for, args=(path, start, results)) for _ in range(6)]
        for racer in racers:
            racer.start()
        outcomes = [results.get(timeout=30) for _ in racers]
        for racer in racers:
            racer.join()
        assert outcomes.count(True) == 1, outcomes


def test_runs_sharing_a_cache_build_an_entry_once(tmp_path):
    """Two runs that find one cache entry missing: one builds it, the other waits and then finds it built."""
    import threading

    from bench.storage import build_once

    directory, builds, entered = tmp_path / "entry", [], threading.Event()

    def build() -> None:
        builds.append(threading.current_thread().name)
        entered.set()
        time.sleep(0.5)  # the second run asks for the entry meanwhile
        directory.mkdir()
        (directory / "build.json").write_text("{}")

    first = threading.Thread(target=build_once, args=(directory, "build.json", build), name="first")
    first.start()
    entered.wait(5)
    assert build_once(directory, "build.json", build) == directory  # waits for the first, then builds nothing
    first.join()
    assert builds == ["first"] and (directory / "build.json").is_file()
