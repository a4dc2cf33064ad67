"""A local Apache Kafka cluster of several KRaft nodes (each a broker and a controller), from the
same jars as kafka_local: with three nodes, replication factor 3 and min.insync.replicas=2, so
an acknowledged event survives the death of any one node.

Node N lives in ``home/node-N`` (its own ports, log dir and node.id). ``home/cluster.json``
records the node count, the cluster id and the ports: the controllers are static voters, so a
node restarted after a crash must come back on the address the others know.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interaction_store.kafka_local import (
    _HOST,
    DEFAULT_VERSION,
    BrokerStatus,
    KafkaSetupError,
    LocalKafka,
    _file_lock,
    _pick_free_ports,
    _port_is_free,
    new_cluster_id,
    wait_for_broker,
)

__all__ = ["ClusterNode", "LocalKafkaCluster", "cluster_size", "replication_for"]

MAX_NODES = 9
_STATE_NAME = "cluster.json"


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``: three copies
    where there are three brokers, and two of them must acknowledge a write, so one broker
    may be lost without losing an acknowledged event or refusing writes."""
    replicas = min(3, brokers)
    return replicas, 2 if replicas >= 3 else 1


def cluster_size(home: Path) -> int | None:
    """The node count of the local cluster in ``home``; None when it holds none."""
    try:
        state = json.loads((Path(home).expanduser() / _STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    nodes = state.get("nodes") if isinstance(state, dict) else None
    return nodes if isinstance(nodes, int) else None


class ClusterNode(LocalKafka):
    """One node of a local cluster: static voters, internal topics replicated like ours."""

    def __init__(
        self,
        home: Path,
        node_id: int,
        nodes: int,
        version: str = DEFAULT_VERSION,
        jar_cache: Path | None = None,
    ) -> None:
        super().__init__(home, version, jar_cache)
        self.node_id = node_id
        self.nodes = nodes
        self.voters = ""
        self.ports = (0, 0)

    def _choose_ports(self) -> tuple[int, int]:
        return self.ports  # chosen for the whole cluster: every voter's address is in config

    def _format_options(self) -> list[str]:
        return []  # controller.quorum.voters in the config is the quorum: nothing to add

    def _properties(self, broker_port: int, controller_port: int) -> dict[str, str]:
        props = super()._properties(broker_port, controller_port)
        del props["controller.quorum.bootstrap.servers"]  # static voters instead
        replicas, min_isr = (str(n) for n in replication_for(self.nodes))
        props.update(
            {
                "node.id": str(self.node_id),
                "controller.quorum.voters": self.voters,
                "offsets.topic.replication.factor": replicas,
                "transaction.state.log.replication.factor": replicas,
                "transaction.state.log.min.isr": min_isr,
                "share.coordinator.state.topic.replication.factor": replicas,
                "share.coordinator.state.topic.min.isr": min_isr,
                # Topics created without these (by other tools) get the same guarantee.
                "default.replication.factor": replicas,
                "min.insync.replicas": min_isr,
            }
        )
        return props


class LocalKafkaCluster:
    """``nodes`` local KRaft nodes whose configs, data, logs and state live in ``home``."""

    def __init__(
        self,
        home: Path,
        nodes: int = 3,
        version: str = DEFAULT_VERSION,
        jar_cache: Path | None = None,
    ) -> None:
        if not 2 <= nodes <= MAX_NODES:
            raise KafkaSetupError(
                f"nodes={nodes}: a local cluster has 2 to {MAX_NODES} nodes "
                "(one node is the plain `istore kafka start`)"
            )
        self.home = Path(home).expanduser().resolve()
        self.count = nodes
        self.nodes = [
            ClusterNode(self.home / f"node-{i}", i, nodes, version, jar_cache)
            for i in range(1, nodes + 1)
        ]

    @property
    def state_file(self) -> Path:
        return self.home / _STATE_NAME

    def node(self, node_id: int) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KafkaSetupError(f"node_id={node_id}: the cluster has nodes 1 to {self.count}")

    def ensure_jars(self, progress: Callable[[str], None] | None = None) -> Path:
        return self.nodes[0].ensure_jars(progress)

    # -- state ---------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _check_home(self, state: dict[str, Any] | None) -> None:
        if (self.home / "data" / "meta.properties").is_file() or (
            self.home / "state.json"
        ).is_file():
            raise KafkaSetupError(
                f"{self.home} holds a single-node broker: stop it (`istore kafka stop`) and "
                "give the cluster another folder (ISTORE_KAFKA_HOME)"
            )
        if state is not None and state.get("nodes") != self.count:
            raise KafkaSetupError(
                f"{self.home} holds a cluster of {state.get('nodes')} nodes, not {self.count}: "
                f"start it with --nodes {state.get('nodes')}, or give this one another folder"
            )

    def _bootstrap(self, ports: list[list[int]]) -> str:
        return ",".join(f"{_HOST}:{broker}" for broker, _ in ports)

    def _ports(self, state: dict[str, Any] | None, running: bool) -> list[list[int]]:
        # Voters are static: keep the recorded ports while any node runs (it knows them), or
        # when all are free; a cluster wholly down may move, every config is rewritten.
        if state is not None:
            recorded: list[list[int]] = [list(map(int, p)) for p in state["ports"]]
            if running or all(_port_is_free(p) for pair in recorded for p in pair):
                return recorded
        chosen = _pick_free_ports(2 * self.count)
        return [chosen[i : i + 2] for i in range(0, len(chosen), 2)]

    def status(self) -> BrokerStatus:
        """Which nodes' processes are alive; does not contact the cluster."""
        state = self._read_state()
        if state is None:
            return BrokerStatus(False, None, None, self.home, "not running (no cluster.json)")
        alive = {n.node_id: n.status() for n in self.nodes}
        up = [i for i, s in alive.items() if s.running]
        bootstrap = self._bootstrap(state["ports"])
        detail = ", ".join(
            f"node {i}: pid {s.pid}" if s.running else f"node {i}: down" for i, s in alive.items()
        )
        return BrokerStatus(
            bool(up),
            bootstrap if up else None,
            None,
            self.home,
            f"{len(up)} of {self.count} up; {detail}",
        )

    # -- start / stop --------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> str:
        """Start the nodes that are not running (all, or one that died) and return the
        bootstrap servers once every node is an unfenced broker of the cluster."""
        self.home.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.home / ".lock"):
            state = self._read_state()
            self._check_home(state)
            down = [n for n in self.nodes if n._running_state() is None]
            ports = self._ports(state, running=len(down) < self.count)
            cluster_id = str(state["cluster_id"]) if state else new_cluster_id()
            self.state_file.write_text(
                json.dumps({"nodes": self.count, "cluster_id": cluster_id, "ports": ports}) + "\n"
            )
            bootstrap = self._bootstrap(ports)
            if down:
                self._launch(down, ports, cluster_id, timeout)
            else:
                wait_for_broker(
                    bootstrap, timeout, cluster_id=cluster_id, brokers_needed=self.count
                )
            return bootstrap

    def _launch(
        self, down: list[ClusterNode], ports: list[list[int]], cluster_id: str, timeout: float
    ) -> None:
        java = self.nodes[0]._java()
        libs = self.ensure_jars()
        voters = ",".join(f"{n.node_id}@{_HOST}:{ports[n.node_id - 1][1]}" for n in self.nodes)
        formats: list[tuple[ClusterNode, subprocess.Popen[str]]] = []
        for node in down:
            node.home.mkdir(parents=True, exist_ok=True)
            node.state_file.unlink(missing_ok=True)
            (node.home / "cluster.id").write_text(cluster_id + "\n")
            node.voters = voters
            broker_port, controller_port = ports[node.node_id - 1]
            node.ports = (broker_port, controller_port)
            node._write_config(broker_port, controller_port)
            cmd = node._format_command(java, libs)
            if cmd is not None:  # each format is a JVM start: run them side by side
                formats.append(
                    (
                        node,
                        subprocess.Popen(
                            cmd,
                            cwd=node.home,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                        ),
                    )
                )
        for node, formatting in formats:
            output, _ = formatting.communicate()
            node._check_formatted(formatting.returncode, output)
        spawned = [(node, *node._spawn(java, libs, *node.ports)) for node in down]

        def exited() -> str | None:
            for node, proc, _ in spawned:
                code = proc.poll()
                if code is not None:
                    return f"Kafka node {node.node_id} exited early with code {code}"
            return None

        deadline = time.monotonic() + timeout
        try:
            # Each started node is asked itself: after a crash the others still list it as a
            # broker until its session times out, so their answer says nothing about it.
            for node, _, _ in spawned:
                wait_for_broker(
                    f"{_HOST}:{node.ports[0]}",
                    max(deadline - time.monotonic(), 1.0),
                    alive=exited,
                    cluster_id=cluster_id,
                    brokers_needed=self.count,
                )
        except KafkaSetupError as exc:
            failures = [str(n._failure(f"node {n.node_id}:", start)) for n, _, start in spawned]
            for node, proc, _ in spawned:
                node._kill(proc.pid, grace=10.0)
                node.state_file.unlink(missing_ok=True)
            raise KafkaSetupError(f"{exc}; nodes stopped\n" + "\n".join(failures)) from exc

    def kill(self, node_id: int) -> int:
        """SIGKILL one node, as a crash would (no controlled shutdown); returns its pid."""
        state = self.node(node_id)._running_state()
        if state is None:
            raise KafkaSetupError(f"node {node_id} of {self.home} is not running")
        pid = int(state["pid"])
        os.kill(pid, signal.SIGKILL)
        self.node(node_id)._wait_gone(pid, 10.0)
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node (SIGTERM to all at once, SIGKILL after ``timeout``); True if any ran."""
        self.home.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.home / ".lock"):
            running = [(n, n._running_state()) for n in self.nodes]
            pids = [(n, int(s["pid"])) for n, s in running if s is not None]
            for _, pid in pids:
                # All at once: a node stopping alone moves its leaderships to the others first.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for node, pid in pids:
                if not node._wait_gone(pid, max(deadline - time.monotonic(), 0.0)):
                    node._kill(pid, grace=0.0)
            for node in self.nodes:
                node.state_file.unlink(missing_ok=True)
            return bool(pids)
