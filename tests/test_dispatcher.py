"""The dispatcher process's task loop: every registered task runs once per tick, a failing task
is counted and runs again without stopping the others, and a stop ends every loop. And the
server refuses to start when its callback address is taken."""

from __future__ import annotations

import asyncio
import socket

from kamicore.config import Config
from kamicore.runtime import dispatcher as dispatcher_module
from kamicore.runtime.dispatcher import Dispatcher

from .server_harness import HOST, free_port
from .test_server_start import kamicore, refusal


class _Metrics:
    def __init__(self):
        self.failures: list[str] = []

    def task_failed(self, task: str) -> None:
        self.failures.append(task)


def test_tasks_run_each_tick_and_a_failing_task_does_not_stop_the_others(tmp_path,
                                                                        monkeypatch):
    config = Config(data_dir=str(tmp_path), dispatcher_interval_seconds=0.01)
    runs = {"steady": 0, "failing": 0}

    async def steady(dispatcher):
        runs["steady"] += 1

    async def failing(dispatcher):
        runs["failing"] += 1
        raise RuntimeError("supplier down")

    monkeypatch.setattr(dispatcher_module, "TASKS", [steady, failing])

    async def main():
        metrics = _Metrics()
        dispatcher = Dispatcher(config, engine=None, dispatcher_metrics=metrics)
        running = asyncio.ensure_future(dispatcher.run())
        while runs["steady"] < 5 or runs["failing"] < 5:
            await asyncio.sleep(0.01)
        dispatcher.stopping.set()
        await asyncio.wait_for(running, 5)
        return metrics

    metrics = asyncio.run(main())
    assert set(metrics.failures) == {"failing"} and len(metrics.failures) >= 5


def test_the_server_refuses_a_callback_address_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        address = f"{HOST}:{taken.getsockname()[1]}"
        result = kamicore(tmp_path / "data", "serve", "--workers", "1", "--listen",
                          f"{HOST}:{free_port()}", "--metrics-listen", "",
                          "--callback-listen", address)
    line = refusal(result)
    assert line.startswith(f"error: --callback-listen {address} is already in use")
