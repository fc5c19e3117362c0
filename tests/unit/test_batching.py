"""`Batched`: calls waiting at one moment run together, each gets its own result or the batch's error.
`BatchedCache`: the keys missing at one moment are loaded together, each once per lifetime."""

from __future__ import annotations

import asyncio

import pytest

from herald.batching import Batched, BatchedCache


class Doubler:
    """`run_many` that doubles each request, one batch at a time, each held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, requests: list[int]) -> list[int]:
        self.batches.append(requests)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [2 * r for r in requests]


async def test_calls_made_while_a_batch_is_out_go_together_in_the_next() -> None:
    run = Doubler()
    batched: Batched[int, int] = Batched(run)
    first = asyncio.create_task(batched(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batched(n)) for n in range(2, 50)]
    await asyncio.sleep(0)
    assert run.batches == [[1]]  # a call alone goes at once
    run.release.set()
    assert await asyncio.gather(first, *rest) == [2 * n for n in range(1, 50)]
    assert run.batches == [[1], list(range(2, 50))]


async def test_a_failing_batch_fails_each_of_its_calls_and_the_next_call_runs_again() -> None:
    run = Doubler()
    run.fail = ValueError("down")
    batched: Batched[int, int] = Batched(run)
    calls = [asyncio.create_task(batched(n)) for n in range(3)]
    run.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3
    run.fail = None
    assert await batched(7) == 14


@pytest.mark.parametrize("gives_up", [0, 1, 2])
async def test_a_call_that_gives_up_leaves_the_others_their_results(gives_up: int) -> None:
    run = Doubler()
    batched: Batched[int, int] = Batched(run)
    calls = [asyncio.create_task(batched(n)) for n in range(3)]
    await asyncio.sleep(0)
    calls[gives_up].cancel()
    run.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[gives_up], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != gives_up] == [2 * n for n in range(3) if n != gives_up]


async def test_a_wrong_count_of_results_is_an_error_not_a_shifted_answer() -> None:
    async def short(requests: list[int]) -> list[int]:
        return requests[:-1]

    batched: Batched[int, int] = Batched(short)
    results = await asyncio.gather(batched(1), batched(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results


async def test_the_keys_missing_at_one_moment_load_together_each_once_and_again_after_their_lifetime() -> None:
    now = [0.0]
    run = Doubler()
    run.release.set()
    cache: BatchedCache[int, int] = BatchedCache(run, ttl=5.0, clock=lambda: now[0])
    assert await asyncio.gather(*(cache.get(n) for n in (1, 2, 1, 3, 2))) == [2, 4, 2, 6, 4]
    assert run.batches == [[1, 2, 3]]  # one statement; a key asked twice is loaded once
    now[0] = 4.9
    assert await asyncio.gather(cache.get(3), cache.get(4)) == [6, 8]
    assert run.batches == [[1, 2, 3], [4]]  # 3 still cached
    now[0] = 5.1
    assert await asyncio.gather(*(cache.get(n) for n in (1, 2, 4))) == [2, 4, 8]
    assert run.batches == [[1, 2, 3], [4], [1, 2]]  # 1 and 2 expired; 4, loaded at 4.9, not
