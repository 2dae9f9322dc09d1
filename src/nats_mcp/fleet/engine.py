"""The fleet engine boundary: one coordinator process's loop — take the lease, read a snapshot, decide, act, record.

Any number of processes run it; the one holding the KV lease (``lock.fleet``, renewed every round, expiring after
``lease_ttl_s``) acts, the others wait to take over. Each round the leader reads its instances from KV, the queues'
pending and in-flight counts per capability and work boundary (``WorkViews.boundary_counts``, the read behind
``warp_work_queue_status``: a target counts only the boundaries it may take) and the registry's
presence (``discover``); it reaps instances that ended (a crash sets the target's backoff), feeds one
:class:`~nats_mcp.fleet.decide.TargetView` per target to the pure :func:`~nats_mcp.fleet.decide.decide`, applies
the starts and stops, and writes every decision to KV, the audit log and the metrics, with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from nats_mcp.coord.context import Caller, owner_key
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.work.views import WorkViews
from nats_mcp.core.aiotasks import stop_task
from nats_mcp.fleet.decide import Decision, Instance, Queues, TargetView, backoff_s, decide, work_for
from nats_mcp.fleet.mechanism import Exit, Mechanism, MechanismError, StartSpec
from nats_mcp.fleet.metrics import FleetMetrics
from nats_mcp.fleet.state import DecisionRecord, FleetStore, InstanceRecord, TargetState
from nats_mcp.fleet.targets import Target, TargetsDoc, TargetsError
from nats_mcp.security.audit.event import AuditEvent, AuditRecorder

log = logging.getLogger("nats_mcp.fleet")

DISCOVER_PAGE = 100


class FleetEngine:
    """The loop of one coordinator process over the targets of ``doc``."""

    def __init__(
        self,
        coordinator: Coordinator,
        doc: TargetsDoc,
        mechanisms: dict[str, Mechanism],
        audit: AuditRecorder,
        metrics: FleetMetrics,
        env_for: EnvFor,
        *,
        tick_s: float = 0.5,
        lease_ttl_s: float = 3.0,
    ) -> None:
        self.coord = coordinator
        self.doc = doc
        self.targets = {t.name: t for t in doc.targets}
        self.mechanisms = mechanisms
        self.audit = audit
        self.metrics = metrics
        self.env_for = env_for
        self.tick_s = tick_s
        self.store = FleetStore(coordinator.conn, coordinator.layout, lease_ttl_s)
        self.views = WorkViews(coordinator.work)
        self.id = self.store.lease.owner
        self.leading = False
        self._announced = False
        for target in doc.targets:  # every series from the start (a scrape shows 0, not nothing)
            for counter in (metrics.starts, metrics.stops, metrics.failures):
                counter.labels(target.name)
        self.caller = Caller(
            guid=secrets.token_hex(16),
            namespace=coordinator.layout.namespace,
            project_id=coordinator.settings.resolved_project_id,
            owner=owner_key("fleet"),
        )

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set; then, if leading, stop the instances this process started and step down.

        The lease is renewed by a task of its own, not by the rounds: a round that waits for agents to stop (up to
        their stop timeout) must not let the lease lapse and a second leader start agents meanwhile."""
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(stop), name="fleet-lease")
        try:
            while not stop.is_set():
                try:
                    await self.round()
                except Exception as exc:  # NATS away, a bucket missing: the next round tries again
                    log.warning("fleet round failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_s)
        finally:
            await stop_task(keeper)
            await self.shutdown()

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        every = min(self.tick_s, self.store.lease.ttl_s / 3)
        while not stop.is_set():
            try:
                self._lead(await self.store.lease.acquire())
            except Exception as exc:  # NATS away: whoever holds the lease when it is back leads
                log.warning("fleet lease: %s", exc)
                self._lead(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def round(self) -> list[DecisionRecord]:
        """One round, if this process holds the lease: read, decide, act, record. Returns the decisions made."""
        if not self.leading:
            self._announced = False
            return []
        if not self._announced:
            await self.store.put_info(
                "leader", {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
            )
            await self.store.put_info("targets", [_summary(t) for t in self.doc.targets])
            self._announced = True
        started = time.perf_counter()
        records = await self.store.instances()
        queues = await self._queues()
        done: list[DecisionRecord] = []
        for target in self.doc.targets:
            mine = [r for r in records if r.target == target.name]
            done += await self._target_round(target, mine, queues)
        self.metrics.decision_latency.observe(time.perf_counter() - started)
        await self.store.add_decisions(done)
        return done

    def _lead(self, leading: bool) -> None:
        if leading != self.leading:
            log.info("fleet coordinator %s %s", self.id, "is now active" if leading else "is standing by")
        self.leading = leading
        self.metrics.leader.set(1 if leading else 0)

    async def shutdown(self) -> None:
        """Stop the instances this process started (its children) and give the lease back to a successor."""
        if self.leading:
            for record in await self.store.instances():
                if record.leader == self.id and record.handle is not None:
                    await self.mechanisms[record.handle.mechanism].stop(record.handle)
                    await self.store.delete_instance(record)
        await self.store.lease.release()
        self._lead(False)

    # -- reading -----------------------------------------------------------------------------------

    async def _queues(self) -> Queues:
        return await self.views.boundary_counts()

    async def _online(self, capabilities: list[str]) -> set[str]:
        """GUIDs of agents with one of ``capabilities`` whose registry presence reads online (or busy, away)."""
        found: set[str] = set()
        for cap in capabilities:
            cursor: str | None = None
            while True:
                page = await self.coord.registry.discover(
                    self.caller, capability=cap, limit=DISCOVER_PAGE, cursor=cursor
                )
                found.update(a.guid for a in page.agents)
                if not page.has_more or page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return found

    # -- one target --------------------------------------------------------------------------------

    async def _target_round(
        self, target: Target, records: list[InstanceRecord], queues: Queues
    ) -> list[DecisionRecord]:
        now = time.time()
        st = await self.store.target_state(target.name)
        online = await self._online(target.capabilities)
        done: list[DecisionRecord] = []
        live: list[InstanceRecord] = []
        for record in records:
            ended = await self._reap(target, record, record.agent_guid in online, now, st)
            if ended is None:
                live.append(record)
            else:
                done.append(ended)
        pending, in_flight, bounded = work_for(target.capabilities, target.boundaries, queues)
        if pending or in_flight:
            st.idle_since = None
        elif st.idle_since is None:
            st.idle_since = now
        ours = {r.agent_guid for r in live}
        view = TargetView(
            name=target.name,
            min=target.min,
            max=target.max,
            pending_per_agent=target.pending_per_agent,
            startup_grace_s=target.startup_grace_s,
            idle_timeout_s=target.idle_timeout_s,
            pending=pending,
            in_flight=in_flight,
            instances=tuple(Instance(r.id, r.started_at, r.agent_guid in online) for r in live),
            others_online=len(online - ours),
            idle_since=st.idle_since,
            backoff_until=st.backoff_until,
            bounded_pending=bounded,
        )
        decisions = decide(view, now)
        # Stops run together (each may wait for an agent to finish its item); starts one by one, each recorded first.
        stops = [d for d in decisions if d.action == "stop"]
        done += await asyncio.gather(*(self._apply(target, d, live, st) for d in stops))
        for decision in decisions:
            if decision.action == "start":
                done.append(await self._apply(target, decision, live, st))
        self.metrics.live.labels(target.name).set(len(live) + sum(1 for d in done if d.action == "start" and d.ok))
        await self.store.put_target_state(target.name, st)
        return done

    async def _reap(
        self, target: Target, record: InstanceRecord, online: bool, now: float, st: TargetState
    ) -> DecisionRecord | None:
        """None while ``record`` lives (marking it running once its agent is online); else its removal, recorded."""
        state = None
        if record.handle is None:  # its starter died before recording it: adopt it (else it would be orphaned)
            for candidate in self.mechanisms.values():
                find = getattr(candidate, "find", None)  # mechanisms that can find an unrecorded instance (local)
                if find is not None and (found := find(target.name, record.id)) is not None:
                    record.handle = found
                    await self.store.put_instance(record)
                    break
        if record.handle is not None:
            mechanism = self.mechanisms.get(record.handle.mechanism)
            state = await mechanism.poll(record.handle) if mechanism is not None else None
        if state is True or (state is None and (online or now - record.started_at < target.startup_grace_s)):
            if online and record.state == "starting":
                record.state = "running"
                st.failures = 0  # it came up: the next crash starts the backoff over
                await self.store.put_instance(record)
            return None
        await self.store.delete_instance(record)
        if isinstance(state, Exit) and state.code not in (0, None):
            st.failures += 1
            wait = backoff_s(st.failures, target.restart_backoff_s, target.restart_backoff_max_s)
            st.backoff_until = now + wait
            st.last_exit = f"exit code {state.code}"
            self.metrics.failures.labels(target.name).inc()
            reason = f"crashed (exit code {state.code}, {st.failures} in a row); no restart for {wait:g}s"
            return self._record(target.name, "crashed", reason, record.id, ok=False)
        if isinstance(state, Exit):
            st.last_exit = "exited" if state.code == 0 else "ended (exit code unknown: not this process's child)"
            return self._record(target.name, "exited", st.last_exit, record.id)
        reason = f"lost: its agent is not online ({target.startup_grace_s:g}s grace over) and this host cannot check it"
        return self._record(target.name, "lost", reason, record.id, ok=False)

    async def _apply(
        self, target: Target, decision: Decision, live: list[InstanceRecord], st: TargetState
    ) -> DecisionRecord:
        if decision.action == "stop":
            record = next(r for r in live if r.id == decision.instance)
            if record.handle is not None:
                await self.mechanisms[record.handle.mechanism].stop(record.handle)
            await self.store.delete_instance(record)
            live.remove(record)
            self.metrics.stops.labels(target.name).inc()
            return self._record(target.name, "stop", decision.reason, record.id)
        if not self.leading:  # the lease was lost during this round: the new leader decides
            return self._record(target.name, "start", f"{decision.reason}; skipped: no longer active", None, ok=False)
        guid = secrets.token_hex(16)
        instance = secrets.token_hex(6)
        record = InstanceRecord(target.name, instance, guid, f"{target.name}-{instance}", time.time(), leader=self.id)
        await self.store.put_instance(record)  # counted from now on, even if this process dies mid-start
        try:
            env = self.env_for(target, record)
            spec = StartSpec(target.name, instance, guid, record.agent_name, tuple(target.capabilities), env)
            record.handle = await self.mechanisms[target.mechanism].start(spec)
        except (MechanismError, TargetsError) as exc:
            await self.store.delete_instance(record)
            st.failures += 1
            wait = backoff_s(st.failures, target.restart_backoff_s, target.restart_backoff_max_s)
            st.backoff_until = time.time() + wait
            self.metrics.failures.labels(target.name).inc()
            return self._record(target.name, "start", f"{decision.reason}; failed: {exc}", instance, ok=False)
        await self.store.put_instance(record)
        live.append(record)
        self.metrics.starts.labels(target.name).inc()
        return self._record(target.name, "start", decision.reason, instance)

    def _record(
        self, target: str, action: str, reason: str, instance: str | None, *, ok: bool = True
    ) -> DecisionRecord:
        """One decision: a metric, an audit record (the reason, never an environment value) and the KV entry."""
        self.metrics.decisions.labels(target, action).inc()
        log.info("fleet %s %s (%s): %s", action, target, instance or "-", reason)
        self.audit.record(
            AuditEvent(
                "fleet_decision",
                tool=f"fleet_{action}",  # the audit keeps tool-like names only
                namespace=self.coord.layout.namespace,
                outcome="ok" if ok else "failed",
                reason=f"{target}/{instance or '-'}: {reason}",
            )
        )
        return DecisionRecord(time.time(), target, action, reason, instance, ok, self.id)


def _summary(target: Target) -> dict[str, object]:
    return {
        "name": target.name,
        "capabilities": target.capabilities,
        "min": target.min,
        "max": target.max,
        "mechanism": target.mechanism,
        "boundaries": target.boundaries,
    }


class EnvFor:
    """The agent environment of one start: NATS settings, identity, capabilities, the target's env (read now)."""

    def __init__(self, nats_env: dict[str, str], environ: dict[str, str]) -> None:
        self.nats_env = nats_env
        self.environ = environ

    def __call__(self, target: Target, record: InstanceRecord) -> dict[str, str]:
        from nats_mcp.fleet.targets import resolve_env

        extra = resolve_env(target.local, self.environ) if target.local is not None else {}
        return {
            **self.nats_env,
            "LOOMINAL_AGENT_ID": record.agent_guid,
            "NATS_MCP_FLEET_TARGET": target.name,
            "NATS_MCP_FLEET_INSTANCE": record.id,
            "NATS_MCP_FLEET_AGENT_NAME": record.agent_name,
            "NATS_MCP_FLEET_CAPABILITIES": ",".join(target.capabilities),
            "NATS_MCP_FLEET_IDLE_S": f"{target.idle_timeout_s:g}",
            **extra,
        }
