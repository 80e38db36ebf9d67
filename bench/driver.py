"""The load driver: P spawned processes (multiprocessing, spawn), reused for every figure of a run,
each with grpc.aio channels (one HTTP/2 connection each) and its share of the requests, serialised
before timing starts. The processes connect, then start together on a barrier; a job stops at its
deadline and reports what it finished. Replies are decoded and counted after the timing ends.

Kinds of job: redeem, batch and verify (unary Redeem, RedeemBatch, VerifyCode: `lanes` calls in
flight), stream (RedeemStream: `lanes` long-lived streams, `window` requests written ahead of
their answers on each; latency from write to answer) and orders (CreateOrder + ConfirmPayment
pairs: `lanes` orders in flight, latency per order: both calls).

Open loop (a job with a `rate`; unary kinds and orders): the processes together offer `rate`
calls (orders) a second on a fixed schedule, process k taking every P-th slot, whatever the
answers do: a call is sent when its slot comes even if earlier ones have not been answered, and
its latency runs from its scheduled time, so a server that stalls is charged for the calls queued
behind it (no coordinated omission). The lag from scheduled to actual send is kept as well: it
says whether the client kept to the schedule.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import signal
import time
from dataclasses import dataclass

from common import expect
from rpcs import (
    METHOD_BATCH,
    METHOD_CONFIRM,
    METHOD_CREATE,
    METHOD_HEALTH,
    METHOD_REDEEM,
    METHOD_STREAM,
    METHOD_VERIFY,
    call_timeout_seconds,
    count_succeeded,
)

# HTTP/2 connections per process. SO_REUSEPORT spreads connections, not calls, by a hash: with
# 4 connections over 2 workers one worker gets all of them 1 time in 8 (and 3 of 4 half the
# time); with 8 and more the split is rarely worse than 5:3.
CHANNELS_PER_PROCESS = 4
STREAM_WINDOW = 64  # requests written ahead of their answers on one stream
UNARY_METHODS = {"redeem": METHOD_REDEEM, "batch": METHOD_BATCH, "verify": METHOD_VERIFY}
open_loop_in_flight_max = 4096  # per process: beyond this a late call waits (and is charged)


@dataclass
class Job:
    """One driver process's share of one figure."""

    target: str
    kind: str  # redeem, batch, verify, stream or orders
    requests: list  # serialised requests; orders: (create, confirm) pairs; [] for an idle process
    key: str
    lanes: int  # calls (stream: streams, orders: orders) in flight in this process
    channels: int
    deadline_seconds: float
    decode: bool  # decode and count the replies after timing (kamicore's)
    repeat: bool = False  # go round `requests` again until the deadline
    window: int = STREAM_WINDOW
    rate: float = 0.0  # open loop: calls (orders) per second from this process; 0: closed
    offset: float = 0.0  # open loop: this process's first slot, seconds after the start


@dataclass
class Outcome:
    """What the processes of one job did together."""

    calls: int
    seconds: float  # from the first process's start to the last one's end
    latencies: array.array  # seconds, every call
    errors: collections.Counter
    succeeded: int  # items the replies say were done (decoded jobs only)
    capped: bool  # a process stopped at the deadline
    lags: array.array  # open loop: seconds from each call's scheduled time to its sending


def driver_main(connection, barrier) -> None:
    """A driver process: runs jobs sent over `connection` until it gets None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    import grpc  # noqa: F401 - imported now, not on the first job's time
    from kamicore.v1 import orders_pb2, redemption_pb2  # noqa: F401
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = asyncio.run(run_job(job, barrier))
        except BaseException as error:  # noqa: BLE001 - reported: the parent ends the run
            with contextlib.suppress(Exception):
                barrier.abort()
            result = {"error": f"{type(error).__name__}: {error}"}
        connection.send(result)


async def run_job(job: Job, barrier) -> dict:
    clock = time.perf_counter  # system-wide monotonic: comparable across the processes
    if not job.requests:  # fewer calls in flight than processes: this one only starts along
        barrier.wait(60)
        return {"idle": True}
    import grpc
    options = [("grpc.use_local_subchannel_pool", 1),  # one connection per channel
               ("grpc.max_receive_message_length", 16 * 2**20)]
    channels = [grpc.aio.insecure_channel(job.target, options=options)
                for _ in range(job.channels)]
    metadata = (("authorization", f"Bearer {job.key}"),)
    requests, count = job.requests, len(job.requests)
    errors: collections.Counter = collections.Counter()
    latencies: list[float] = []
    lags: list[float] = []
    replies: list = []
    keep = job.decode
    try:
        for channel in channels:  # connect before the clock starts
            await asyncio.wait_for(channel.channel_ready(), 20)
            await channel.unary_unary(METHOD_HEALTH)(b"", timeout=20)
        deadline = [0.0]
        origin = [0.0]  # the start, when the processes leave the barrier
        # shared by the lanes of this process
        pending = itertools.count() if job.repeat else iter(range(count))

        async def unary_lane(call):
            for index in pending:
                if clock() > deadline[0]:
                    return
                request = requests[index % count]
                before = clock()
                try:
                    reply = await call(request, metadata=metadata, timeout=call_timeout_seconds)
                    if keep:
                        replies.append(reply)
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                latencies.append(clock() - before)

        async def orders_lane(create, confirm):
            for index in pending:
                if clock() > deadline[0]:
                    return
                create_request, confirm_request = requests[index % count]
                before = clock()
                try:
                    created = await create(create_request, metadata=metadata,
                                           timeout=call_timeout_seconds)
                    confirmed = await confirm(confirm_request, metadata=metadata,
                                              timeout=call_timeout_seconds)
                    if keep:
                        replies.append((created, confirmed))
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                latencies.append(clock() - before)

        async def stream_lane(channel, items):
            call = channel.stream_stream(METHOD_STREAM)(metadata=metadata,
                                                        timeout=call_timeout_seconds * 4)
            window = asyncio.Semaphore(job.window)
            sent_at: collections.deque = collections.deque()

            async def writer():
                for request in items:
                    await window.acquire()
                    if clock() > deadline[0]:
                        break
                    sent_at.append(clock())
                    await call.write(request)
                await call.done_writing()

            writing = asyncio.ensure_future(writer())
            try:
                while True:
                    reply = await call.read()
                    if reply is grpc.aio.EOF:
                        break
                    latencies.append(clock() - sent_at.popleft())
                    if keep:
                        replies.append(reply)
                    window.release()
                await writing
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                writing.cancel()

        async def open_loop(send):
            """Call `send(index)` at origin + offset + index / rate until the deadline."""
            interval, tasks = 1.0 / job.rate, set()
            limit = asyncio.Semaphore(open_loop_in_flight_max)

            async def one(index: int, scheduled: float):
                async with limit:
                    lags.append(clock() - scheduled)
                    try:
                        reply = await send(index)
                        if keep:
                            replies.append(reply)
                    except grpc.aio.AioRpcError as error:
                        errors[error.code().name] += 1
                    latencies.append(clock() - scheduled)

            for index in itertools.count():
                scheduled = origin[0] + job.offset + index * interval
                if scheduled > deadline[0] or (index >= count and not job.repeat):
                    break
                if scheduled > clock():
                    await asyncio.sleep(scheduled - clock())  # then every slot that is due
                task = asyncio.ensure_future(one(index, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)

        if job.rate:
            if job.kind == "orders":
                pairs = [(channel.unary_unary(METHOD_CREATE),
                          channel.unary_unary(METHOD_CONFIRM)) for channel in channels]

                async def send(index):
                    create, confirm = pairs[index % len(pairs)]
                    create_request, confirm_request = requests[index % count]
                    created = await create(create_request, metadata=metadata,
                                           timeout=call_timeout_seconds)
                    return created, await confirm(confirm_request, metadata=metadata,
                                                  timeout=call_timeout_seconds)
            else:
                expect(job.kind in UNARY_METHODS, f"open loop: {job.kind}")
                calls = [channel.unary_unary(UNARY_METHODS[job.kind]) for channel in channels]

                def send(index):
                    return calls[index % len(calls)](requests[index % count], metadata=metadata,
                                                     timeout=call_timeout_seconds)
            lanes = [open_loop(send)]
        elif job.kind == "stream":
            expect(not job.repeat, "a stream job does not repeat")
            lanes = [stream_lane(channels[lane % len(channels)], requests[lane::job.lanes])
                     for lane in range(job.lanes)]
        elif job.kind == "orders":
            pairs = [(channel.unary_unary(METHOD_CREATE), channel.unary_unary(METHOD_CONFIRM))
                     for channel in channels]
            lanes = [orders_lane(*pairs[lane % len(pairs)]) for lane in range(job.lanes)]
        else:
            calls = [channel.unary_unary(UNARY_METHODS[job.kind]) for channel in channels]
            lanes = [unary_lane(calls[lane % len(calls)]) for lane in range(job.lanes)]
        barrier.wait(60)  # every process starts together
        started = origin[0] = clock()
        deadline[0] = started + job.deadline_seconds
        await asyncio.gather(*lanes)
        finished = clock()
    finally:
        for channel in channels:
            await channel.close()
    return {"started": started, "finished": finished, "calls": len(latencies),
            "latencies": array.array("d", latencies).tobytes(), "errors": dict(errors),
            "lags": array.array("d", lags).tobytes(),
            "succeeded": count_succeeded(job.kind, replies) if keep else 0,
            "capped": finished >= deadline[0]}


class DriverPool:
    """P spawned driver processes, reused for every job of the run."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(processes)
        self.workers = []
        for _ in range(processes):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=driver_main, args=(child_end, self.barrier),
                                      name="bench-driver", daemon=True)
            process.start()
            child_end.close()
            self.workers.append((process, parent_end))

    @property
    def processes(self) -> int:
        return len(self.workers)

    def drive(self, target: str, kind: str, requests: list, key: str, lanes: int,
              deadline_seconds: float, decode: bool, processes: int | None = None,
              channels: int = CHANNELS_PER_PROCESS, repeat: bool = False,
              rate: float = 0.0) -> Outcome:
        """`requests` split over `processes` (default: all), `lanes` in flight in each; with a
        `rate`, open loop instead: `rate` calls a second from all of them together, for
        `deadline_seconds` of schedule (`lanes` unused)."""
        processes = processes or self.processes

        def share(index: int) -> list:  # a list repeated, shorter than the processes: all of it
            if repeat and len(requests) < processes:
                return requests
            return requests[index::processes]

        jobs = [Job(target, kind, share(index), key, lanes, channels,
                    deadline_seconds, decode, repeat, rate=rate / processes,
                    offset=index / rate if rate else 0.0) for index in range(processes)]
        jobs += [Job(target, kind, [], key, 0, 0, deadline_seconds, False)
                 for _ in range(processes, self.processes)]
        results = [result for result in self.run(jobs) if not result.get("idle")]
        latencies, lags = array.array("d"), array.array("d")
        errors: collections.Counter = collections.Counter()
        for result in results:
            latencies.frombytes(result["latencies"])
            lags.frombytes(result["lags"])
            errors.update(result["errors"])
        return Outcome(
            calls=sum(result["calls"] for result in results),
            seconds=(max(result["finished"] for result in results)
                     - min(result["started"] for result in results)) if results else 0.0,
            latencies=latencies, errors=errors,
            succeeded=sum(result["succeeded"] for result in results),
            capped=any(result["capped"] for result in results), lags=lags)

    def run(self, jobs: list[Job]) -> list[dict]:
        expect(len(jobs) == len(self.workers), "one job per driver process")
        self.barrier.reset()
        for (_, connection), job in zip(self.workers, jobs, strict=True):
            connection.send(job)
        results = []
        deadline = time.monotonic() + jobs[0].deadline_seconds + call_timeout_seconds + 90
        for process, connection in self.workers:
            while not connection.poll(1.0):
                expect(process.is_alive(), f"driver process {process.pid} died")
                expect(time.monotonic() < deadline, "a driver job did not finish in time")
            results.append(connection.recv())
        failures = [result["error"] for result in results if "error" in result]
        expect(not failures, f"driver: {failures}")
        return results

    def close(self) -> None:
        for _, connection in self.workers:
            with contextlib.suppress(OSError, ValueError):
                connection.send(None)
        for process, connection in self.workers:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            connection.close()
        self.workers.clear()
