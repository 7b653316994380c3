"""The job runner on Flower: one SuperLink run per job, watched until the ServerApp has ended it.

`start` turns a stored job into a run of the valuation app (deploy/flower_app): the run config carries the
job id, the job store's path (the ServerApp records rounds and the model there), the consumers' grants keyed
by provider org, and the secure-aggregation settings. A watcher thread polls the run; if the run finishes
while the job is still running (the ServerApp crashed, or the run was stopped), the job is marked failed with
the run's own status, so no job is ever left "running". Run ids are kept in the job store's directory, so a
restarted coordinator can still tell whether a job's run is alive.

When a watched run ends with its job succeeded, the watcher calls the success listeners (`on_success`) with
the job id, in the coordinator's API process: that is where the coordinator's identity lives, so that is
where a succeeded job's model provenance is signed (`coordinator.provenance`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from coordinator.agreements import AgreementRegistry
from coordinator.flower.control import FINISHED, ControlClient, build_fab
from coordinator.flower.server_app import run_config_for
from coordinator.job_spec import JobState
from coordinator.jobs import InvalidTransition, JobStore

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5
SECAGG_THRESHOLD_SHARE = 2 / 3  # reconstruction threshold as a share of the cohort (2 of 3)

SuccessListener = Callable[[str], object]


class FlowerRunner:
    """Implements `coordinator.jobs.JobRunner` on a SuperLink reached through `control`."""

    def __init__(
        self, store: JobStore, agreements: AgreementRegistry, control: ControlClient, *, state_dir: Path
    ):
        self._store = store
        self._agreements = agreements
        self._control = control
        self._fab = build_fab()
        self._runs_file = Path(state_dir) / "flower-runs.json"
        self._runs: dict[str, int] = (
            json.loads(self._runs_file.read_text()) if self._runs_file.exists() else {}
        )
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._watched: set[str] = set()
        self._success_listeners: list[SuccessListener] = []

    def start(self, job_id: str) -> None:
        record = self._store.get(job_id)
        spec = record.spec
        grants_by_org: dict[str, str] = {}
        min_cohort = 1
        for agreement_id in spec.agreements:
            agreement = self._agreements.get(agreement_id)
            grants_by_org[agreement.terms.provider_org] = record.grants[agreement_id]
            min_cohort = max(min_cohort, agreement.terms.constraints.min_cohort or 1)
        nodes = len(grants_by_org)
        settings: dict[str, bool | int | float | str] = {
            "task": spec.task,
            "num-rounds": spec.rounds,
            "min-cohort": min_cohort,
            "secagg": spec.secagg,
            "num-shares": nodes,
            "reconstruction-threshold": max(2, min(nodes - 1, round(nodes * SECAGG_THRESHOLD_SHARE))),
        }
        run_config = run_config_for(
            job_id, self._store.path, self._store.models_dir, grants_by_org, **settings
        )
        self._store.set_state(job_id, JobState.RUNNING)
        run_id = self._control.start_run(self._fab, run_config)
        with self._lock:
            self._runs[job_id] = run_id
            self._runs_file.write_text(json.dumps(self._runs))
        self._watch_in_background(job_id, run_id)

    def on_success(self, listener: SuccessListener) -> Callable[[], None]:
        """Call ``listener(job_id)`` in a job's watcher thread once its run ended with the job succeeded.

        Returns a function that removes the listener again. A listener that raises is logged; the job's state
        and the other listeners are not affected.
        """
        with self._lock:
            self._success_listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._success_listeners:
                    self._success_listeners.remove(listener)

        return remove

    def cancel(self, job_id: str) -> None:
        """Ask the ServerApp to stop at its next round (the store's cancel flag, set by the API); the run is
        stopped outright only if it has not ended by itself within a round's time."""
        run_id = self._runs.get(job_id)
        if run_id is not None:
            threading.Timer(30.0, self._stop_if_running, args=(job_id, run_id)).start()

    def is_alive(self, job_id: str) -> bool:
        run_id = self._runs.get(job_id)
        if run_id is None:
            return False
        try:
            alive = self._control.run_status(run_id)[0] != FINISHED
        except KeyError:
            return False
        if alive and job_id not in self._watched:
            self._watch_in_background(job_id, run_id)  # a run a restarted coordinator adopts
        return alive

    def _watch_in_background(self, job_id: str, run_id: int) -> None:
        self._watched.add(job_id)
        watcher = threading.Thread(
            target=self._watch, args=(job_id, run_id), name=f"watch-{job_id}", daemon=True
        )
        self._watchers.append(watcher)
        watcher.start()

    def close(self) -> None:
        self._stopping.set()
        for watcher in self._watchers:
            watcher.join(timeout=5)

    def _stop_if_running(self, job_id: str, run_id: int) -> None:
        if self._store.get(job_id).state == JobState.RUNNING:
            self._control.stop_run(run_id)

    def _watch(self, job_id: str, run_id: int) -> None:
        while not self._stopping.is_set():
            status, sub_status, details = self._control.run_status(run_id)
            if status == FINISHED:
                break
            time.sleep(WATCH_INTERVAL_S)
        else:
            return
        state = self._store.get(job_id).state
        if state == JobState.SUCCEEDED:
            self._succeeded(job_id)
            return
        if state != JobState.RUNNING:
            return  # the ServerApp ended the job itself, as it should
        how = f"{sub_status}: {details}" if details else sub_status
        reason = f"the Flower run {run_id} ended ({how}) before the job did"
        try:
            self._store.set_state(job_id, JobState.FAILED, reason)
        except InvalidTransition:
            log.info("job %s ended while its run was being checked", job_id)

    def _succeeded(self, job_id: str) -> None:
        with self._lock:
            listeners = list(self._success_listeners)
        for listener in listeners:
            try:
                listener(job_id)
            except Exception:  # another component's failure: logged with its traceback, the job stands
                log.exception("a success listener of job %s failed", job_id)
