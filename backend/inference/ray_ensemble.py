"""The whole-map ensemble on a Ray cluster (``m3 infer --ray ADDRESS``): the same layers as the local path.

Actors each hold one :class:`MapEvaluator` (one onnxruntime session, on the GPU Ray gives the actor where it
gives one) over the cube they read from the shared path, and evaluate whole *rounds* of the mask schedule: a
round's evaluations hide every cell exactly once, so an actor sends one composite of them (each cell's
probability from the evaluation that hid it, and its weight). Ray tasks on the driver's node then fold the
rounds into the sums (:class:`WeightedSums`'s float32 arithmetic) in round order, the order
:func:`run_ensemble` adds them in: the layers are bit for bit the local path's for the same mask seed, and the
driver holds one set of sums, at the end.

Failures: actors restart (``max_restarts``) and their tasks are retried (``max_task_retries``), on another
node where theirs is gone; a round whose outputs were lost with a node, or whose actor could not come back, is
evaluated again. Actors with nothing left to do are released at once, so a restarted actor finds room.

Ray is imported only when this runs (the ``scale`` extra); importing the module does not need it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.inference.ensemble import DEFAULT_TAPER_CELLS, EnsembleResult, Evaluate, Progress, WeightedSums
from backend.inference.masks import MaskSchedule
from backend.settings import Settings

log = logging.getLogger(__name__)

#: The folded sums: w·p and w·p² (float32 [S, H, W]), w (float32 [H, W]), hidden count (uint16 [H, W]).
Sums = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: One round's outputs: each cell's probability from the evaluation that hid it, NaN where any evaluation
#: of the round gave NaN (float32 [S, H, W]), and each cell's weight (float32 [H, W]).
Round = tuple[np.ndarray, np.ndarray]

#: An actor restarts this many times (a node lost, a process killed) before its rounds go to the others.
MAX_RESTARTS = 3


def round_sums(evaluate: Evaluate, n_species: int, schedule: MaskSchedule, r: int,
               taper: int = DEFAULT_TAPER_CELLS, members: int = 1) -> Round:
    """Round ``r``'s evaluations as one composite: what :func:`fold` needs to add the round as the local path does.

    Every cell is hidden in exactly one evaluation of a round and weighs 0 in the others, so the local path's
    sums gain, per cell, w·p and (w·p)·p of that one evaluation in float32 (plus zeros, which change nothing
    but a NaN, kept here). Half the bytes of the sums themselves travel from the actor to the fold.
    """
    cover = schedule.round(r)
    part = cover.part()
    prob_round = np.empty((n_species, *schedule.shape), dtype=np.float32)
    unreached = np.zeros((n_species, *schedule.shape), dtype=bool)
    for k in range(cover.parts):
        region = part == k
        hide = np.broadcast_to(region, (n_species, *schedule.shape))
        shift = cover.shifts[k]
        prob = evaluate(hide, shift, r % members) if members > 1 else evaluate(hide, shift)
        prob_round[:, region] = prob[:, region]
        unreached |= np.isnan(prob)
    prob_round[unreached] = np.nan
    return prob_round, cover.weights(taper)


def fold(total: Sums | None, part: Round) -> tuple[int, Sums]:
    """(0, the running sums plus one round's), in float32 as the local path adds them (the 0 tells the driver)."""
    prob, weight = part
    wp = prob * weight
    wp2 = wp * prob
    if total is None:
        return 0, (wp, wp2, np.array(weight), np.ones(weight.shape, dtype=np.uint16))
    return 0, (total[0] + wp, total[1] + wp2, total[2] + weight, total[3] + np.uint16(1))


class RoundEvaluator:
    """A Ray actor's state: the model (every member), the cube read from the shared path, one evaluator."""

    def __init__(self, settings: Settings, schedule: MaskSchedule, taper: int, members: int, threads: int) -> None:
        from backend.inference.cube_inputs import CubeSource
        from backend.inference.engine import InferenceEngine
        from backend.inference.reinference import map_evaluator

        if settings.ort_intra_threads == 0:  # onnxruntime would take every core of the node, not the actor's
            settings = settings.model_copy(update={"ort_intra_threads": threads})
        self.model = InferenceEngine.from_settings(settings, cpu_mem_arena=True)
        arrays = CubeSource.open(settings.cube_dir).read()
        self.evaluate = map_evaluator(settings, self.model, arrays, threads=threads)
        self.schedule, self.taper, self.members = schedule, taper, members
        log.info("ensemble actor on %s, pid %d, %d thread(s)", self.model.provider, os.getpid(), threads)

    def ready(self) -> str:
        """The provider the actor's session runs on (answers once the actor is up)."""
        return self.model.provider

    def round(self, r: int) -> tuple[str, Round]:
        """(the node it ran on, round r's outputs)."""
        import ray

        outputs = round_sums(self.evaluate, len(self.model.card.species), self.schedule, r, self.taper, self.members)
        return ray.get_runtime_context().get_node_id(), outputs


@dataclass
class RayEnsemble:
    """:func:`run_ensemble` on a Ray cluster: called with the same arguments, it returns the same result.

    ``address``: a cluster's address (``host:port``), ``auto`` (the cluster this node belongs to, or
    ``RAY_ADDRESS``) or ``local`` (a cluster of this machine, started for the run). ``actors``: how many
    evaluators (default: one per GPU of the cluster where it has GPUs, else one per ``cpus_per_actor`` CPUs;
    never more than the rounds). The cube and model folders of ``settings`` must be paths every node reads
    (a shared filesystem).
    """

    settings: Settings
    address: str = "auto"
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def __call__(self, evaluate: Evaluate | None, species: tuple[str, ...], schedule: MaskSchedule,
                 taper: int = DEFAULT_TAPER_CELLS, progress: Progress | None = None, threads: int | None = None,
                 members: int = 1) -> EnsembleResult:
        """Evaluate every round on the cluster and reduce them; ``evaluate`` (the driver's own) is not used."""
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=None if self.address == "local" else self.address, logging_level=logging.WARNING,
                     log_to_driver=False)
        try:
            total = self._run(ray, schedule, taper, members, progress)
        finally:
            if started_here:
                ray.shutdown()
        sums = WeightedSums(len(species), schedule.shape, 1)
        sums.acc, sums.acc2, sums.wsum, sums.count = total
        if sums.count.min() < schedule.rounds:
            raise RuntimeError(f"{int((sums.count < schedule.rounds).sum())} cells hidden fewer than "
                               f"{schedule.rounds} times")
        mean, std = sums.mean_std()
        log.info("ensemble on Ray: %d evaluations in %d rounds on %d actor(s)", len(schedule), schedule.rounds,
                 self.stats.get("actors", 0))
        return EnsembleResult(species=species, mean=mean, std=std, count=sums.count, evaluations=len(schedule))

    def _run(self, ray: Any, schedule: MaskSchedule, taper: int, members: int, progress: Progress | None) -> Sums:
        """Start the actors, run the rounds, fold them; the folded sums, as writable arrays."""
        resources = ray.cluster_resources()
        gpus = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if resources.get("GPU", 0) else 0.0)
        count = self.actors or (int(resources.get("GPU", 0) // gpus) if gpus else
                                int(resources.get("CPU", 1) // self.cpus_per_actor))
        count = max(1, min(count, schedule.rounds))
        threads = max(1, int(self.cpus_per_actor))
        settings = self.settings.model_copy(update={"cube_dir": Path(self.settings.cube_dir).resolve(),
                                                    "model_dir": Path(self.settings.model_dir).resolve()})
        actor_cls = ray.remote(RoundEvaluator).options(
            num_cpus=self.cpus_per_actor, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
            scheduling_strategy="SPREAD")

        def spawn() -> Any:
            """A new evaluator actor."""
            return actor_cls.remote(settings, schedule, taper, members, threads)

        driver = _RoundDriver(ray, spawn, schedule.rounds, schedule.parts, progress)
        self.stats.update(actors=count, gpus_per_actor=gpus, cpus_per_actor=self.cpus_per_actor)
        total_ref = driver.run(count)
        self.stats.update(reevaluated=driver.reevaluated, nodes=len(set(driver.nodes.values())))
        return tuple(np.array(a) for a in ray.get(total_ref))  # type: ignore[return-value]


class _RoundDriver:
    """Hands rounds to idle actors and folds their sums in round order on the driver's node; retries losses."""

    def __init__(self, ray: Any, spawn: Any, rounds: int, parts: int, progress: Progress | None) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.spawn, self.rounds, self.parts, self.progress = ray, spawn, rounds, parts, progress
        here = ray.get_runtime_context().get_node_id()
        self.fold = ray.remote(fold).options(
            num_cpus=0, num_returns=2, max_retries=MAX_RESTARTS,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True))
        self.queue: deque[int] = deque(range(rounds))
        self.actors: list[Any] = []
        self.idle: list[Any] = []
        self.waiting: dict[Any, tuple[str, int, Any]] = {}  # marker -> (round|fold|ready, r, actor or sums)
        self.done: dict[int, Any] = {}   # round -> its outputs (a reference), evaluated but not folded yet
        self.total: Any = None           # the folded sums (a reference)
        self.folded = 0
        self.folding = False
        self.reevaluated = 0
        self.losses = 0
        self.started = 0
        self.nodes: dict[int, str] = {}  # round -> the node that evaluated it

    def run(self, actors: int) -> Any:
        """Fold every round; the reference to the folded sums. The actors are released at the end, or on an error."""
        try:
            for _ in range(actors):
                self._add_actor()
            while self.folded < self.rounds:
                self._dispatch()
                self._fold_next()
                if not self.waiting:
                    raise RuntimeError("the ensemble on Ray has nothing to wait for: a bug")
                ready, _ = self.ray.wait(list(self.waiting), num_returns=1, fetch_local=False)
                for marker in ready:
                    self._settle(marker)
        finally:
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
        return self.total

    def _add_actor(self) -> None:
        """Start an actor; it takes rounds once it answers."""
        actor = self.spawn()
        self.actors.append(actor)
        self.waiting[actor.ready.remote()] = ("ready", -1, actor)

    def _dispatch(self) -> None:
        """Give queued rounds to idle actors; release idle actors when none are left (their room may be needed)."""
        while self.queue and self.idle:
            r, actor = self.queue.popleft(), self.idle.pop()
            marker, sums = actor.round.options(num_returns=2).remote(r)
            self.waiting[marker] = ("round", r, (actor, sums))
        if not self.queue:
            for actor in self.idle:
                self.ray.kill(actor, no_restart=True)
                self.actors.remove(actor)
            self.idle = []
        elif not self.actors:
            self._add_actor()

    def _fold_next(self) -> None:
        """Fold the next round in order, if its outputs are in and no fold is running."""
        if self.folding or self.folded not in self.done:
            return
        marker, total = self.fold.remote(self.total, self.done.pop(self.folded))
        self.waiting[marker] = ("fold", self.folded, total)
        self.folding = True

    def _settle(self, marker: Any) -> None:
        """Take one finished call: an actor up, a round evaluated, a round folded; or a loss to redo."""
        from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError

        kind, r, payload = self.waiting.pop(marker)
        try:
            value = self.ray.get(marker)
        except (RayActorError, ObjectLostError, WorkerCrashedError, NodeDiedError) as exc:
            self._lost(kind, r, payload, exc)
            return
        if kind == "ready":
            self.idle.append(payload)
            self.started += 1
        elif kind == "round":
            actor, sums = payload
            self.done[r], self.nodes[r] = sums, value
            self.idle.append(actor)
        else:
            self.total, self.folded, self.folding = payload, self.folded + 1, False
            if self.progress:
                self.progress(self.folded * self.parts, self.rounds * self.parts)

    def _lost(self, kind: str, r: int, payload: Any, exc: Exception) -> None:
        """A call lost with its actor, node or object: drop the actor, queue the round again."""
        if kind == "ready" and not self.started:
            raise RuntimeError(f"no ensemble actor could start on the cluster (are the cube and the model on a "
                               f"path every node reads?): {exc}") from exc
        self.losses += 1
        if self.losses > 2 * self.rounds + MAX_RESTARTS:
            raise RuntimeError(f"the ensemble on Ray lost {self.losses} calls; giving up: {exc}") from exc
        log.warning("ensemble on Ray: %s of round %d lost (%s); evaluating it again", kind, r, type(exc).__name__)
        if kind == "fold":
            self.folding = False
            self._forget(payload)
        elif kind in ("round", "ready"):
            actor = payload[0] if kind == "round" else payload
            if kind == "round":
                self._forget(payload[1])
            if actor in self.actors:
                self.actors.remove(actor)
                self.ray.kill(actor, no_restart=True)
        if kind != "ready":
            self.queue.appendleft(r)
            self.reevaluated += 1

    def _forget(self, ref: Any) -> None:
        """Read a lost call's other result, so that Ray does not report its error as unhandled."""
        try:
            self.ray.get(ref, timeout=0)
        except Exception:  # noqa: S110 (the error is the one just handled)
            pass
