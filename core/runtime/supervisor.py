"""The supervisor: owns the data dir's first start (admin key), the hold sweeper and the
Prometheus endpoint; starts N worker processes on one port and the dispatcher (supplier
callbacks, top-up recovery, replenishment: kamicore.runtime.dispatcher), and replaces any of
them that dies.
Before any of that it refuses (StartupError, nothing changed) a data dir another server serves
and addresses already in use. SIGTERM: every worker drains (health NOT_SERVING, in-flight calls
finish, the pending commit lands) and every process exits 0."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

from .. import auth, limits, metrics
from ..config import Config
from ..grpc.worker import worker_main
from .dispatcher import dispatcher_main
from .startup import (
    DataDirLock, StartupError, apply_risk_rules, check_address_free, check_tls_files,
    open_engine,
)
from .sweeper import Sweeper

log = logging.getLogger("kamicore")


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[multiprocessing.Process] = []
        self.dispatcher: multiprocessing.Process | None = None
        self.stopping = threading.Event()

    def start_worker(self, target=worker_main,
                     name: str = "kamicore-worker") -> multiprocessing.Process:
        ready = self.context.Event()
        process = self.context.Process(target=target, args=(self.config, ready), name=name,
                                       daemon=False)
        process.start()
        process.ready = ready
        return process

    def run(self) -> int:
        """Serve until SIGTERM; StartupError before anything started or changed."""
        check_tls_files(self.config)
        check_address_free(self.config.listen, "--listen")
        if self.config.metrics_listen:
            check_address_free(self.config.metrics_listen, "--metrics-listen")
        if self.config.callback_listen:
            check_address_free(self.config.callback_listen, "--callback-listen")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with DataDirLock(self.data_dir):  # held while serving: a second server is refused
            engine, key_notice = open_engine(self.config, create=True)
            try:
                return self._serve(engine, key_notice)
            finally:
                engine.close()

    def _serve(self, engine, key_notice: str | None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s kamicore %(message)s")
        if key_notice:
            log.warning("first start: %s", key_notice)
        metrics.prepare_directory(self.data_dir)
        admin_key_path = auth.ensure_admin_key(engine, self.data_dir)
        if admin_key_path:
            log.info("first start: an admin key was written to %s (mode 0600)", admin_key_path)
        if self.config.risk_rules is not None:
            apply_risk_rules(engine, self.config.risk_rules)
        supervisor_metrics = metrics.SupervisorMetrics()
        sweeper = Sweeper(engine)
        if self.config.metrics_listen:
            try:
                metrics.start_http(self.config.metrics_listen, engine)
            except OSError as error:  # taken since the check
                raise StartupError(f"--metrics-listen {self.config.metrics_listen}: "
                                   f"{error.strerror}") from None
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, lambda *_: self.stopping.set())
        self.workers = [self.start_worker() for _ in range(self.config.worker_count())]
        self.dispatcher = self.start_dispatcher()
        for worker in (*self.workers, self.dispatcher):
            while not worker.ready.wait(0.1):
                if not worker.is_alive() or self.stopping.is_set():
                    break
        log.info("serving kamicore.v1 on %s with %d workers; metrics on %s; supplier "
                 "callbacks on %s", self.config.listen, len(self.workers),
                 self.config.metrics_listen or "(off)", self.config.callback_listen or "(off)")
        print(f"kamicore serving on {self.config.listen}", flush=True)
        try:
            while not self.stopping.wait(self.config.sweep_interval_seconds):
                expired = sweeper.sweep()
                if expired:
                    supervisor_metrics.expired_holds.inc(expired)
                self._replace_dead_workers()
        finally:
            self._stop_workers()
        log.info("stopped")
        return 0

    def start_dispatcher(self) -> multiprocessing.Process:
        return self.start_worker(dispatcher_main, "kamicore-dispatcher")

    def _replace_dead_workers(self) -> None:
        for index, worker in enumerate(self.workers):
            if not worker.is_alive() and not self.stopping.is_set():
                metrics.worker_exited(worker.pid)
                log.warning("worker %d exited with %s; starting another", worker.pid,
                            worker.exitcode)
                time.sleep(limits.worker_restart_delay_seconds)
                self.workers[index] = self.start_worker()
        if self.dispatcher is not None and not self.dispatcher.is_alive() \
                and not self.stopping.is_set():
            metrics.worker_exited(self.dispatcher.pid)
            log.warning("dispatcher %d exited with %s; starting another", self.dispatcher.pid,
                        self.dispatcher.exitcode)
            time.sleep(limits.worker_restart_delay_seconds)
            self.dispatcher = self.start_dispatcher()

    def _stop_workers(self) -> None:
        processes = [*self.workers, *([self.dispatcher] if self.dispatcher else [])]
        for worker in processes:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_seconds + 5
        for worker in processes:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("worker %d did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()


def serve(config: Config) -> int:
    return Supervisor(config).run()
