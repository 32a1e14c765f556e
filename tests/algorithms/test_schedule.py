"""``pipeline/schedule.py``: which jobs of a graph may start (the pool itself runs in the study tests)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from forgetlens.pipeline.schedule import ready
from forgetlens.pipeline.study import CircuitJob, FinetuneJob, MeasureJob


@dataclass(frozen=True)
class Step:
    name: str
    needs: tuple = ()
    kind: str = "step"


def test_a_job_waits_for_what_it_needs_unless_that_was_done_before():
    a = Step("a")
    b = Step("b", needs=(a,))
    c = Step("c", needs=(a, b))
    known = {a, b, c}
    assert ready([a, b, c], done=set(), known=known) == [a]
    assert ready([b, c], done={a}, known=known) == [b]
    assert ready([c], done={a, b}, known=known) == [c]
    assert ready([b, c], done=set(), known={b, c}) == [b]  # a: not in this graph, done by an earlier session


def test_a_studys_jobs_state_their_inputs():
    """RL from SFT needs its SFT run; a checkpoint's measurement needs its task's circuit and its run; jobs are
    values (equal when they say the same), so a need found again is the same job."""
    sft = FinetuneJob("sft-s0")
    chained = FinetuneJob("sft-rl-s0", needs=(FinetuneJob("sft-s0"),))
    measure = MeasureJob("sft-s0@4", Path("ckpt"), "ioi", needs=(CircuitJob("ioi"), sft))
    known = {sft, chained, CircuitJob("ioi"), CircuitJob("copying"), measure}
    todo = [chained, sft, CircuitJob("ioi"), CircuitJob("copying"), measure]
    assert ready(todo, set(), known) == [sft, CircuitJob("ioi"), CircuitJob("copying")]
    assert ready([chained, measure], {sft}, known) == [chained]
    assert ready([measure], {sft, CircuitJob("ioi")}, known) == [measure]  # copying's circuit is not its input
    assert {job.kind for job in known} == {"finetune", "circuits", "measure"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_system_after_a_job():
    """What a job freed in the middle of the heap (a trainer's gradients, freed while later allocations still live)
    stays resident under glibc until ``release_freed_memory`` trims it; the worker calls it after every job."""
    from forgetlens.utils import release_freed_memory

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 256 MiB from the heap (below glibc's mmap threshold)
    pinned = bytearray(64 * 1024)  # a live allocation above them: the freed blocks are not the heap's top
    before = resident()
    del blocks
    kept = resident()
    release_freed_memory()
    after = resident()
    assert before - kept < 64 * 2**20  # glibc kept most of the 256 MiB
    assert kept - after > 192 * 2**20  # and gave it back when asked
    del pinned
