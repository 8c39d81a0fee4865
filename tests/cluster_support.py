"""A real Redis Cluster on loopback for the tests: 3 masters with a replica each, six `redis-server
--cluster-enabled yes` processes in temporary directories, joined by `redis-cli --cluster create`.

The cluster bus listens on port + 10000, so ports are picked where both are free. A short node timeout (2 s)
makes a killed master's failover take seconds, not the 15 s default.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dialer.redisproc import RedisProcess, find_redis_server

NODE_TIMEOUT_MS = 2000


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int, taken: Collection[int] = ()) -> list[int]:
    """`count` ports p with p and p + 10000 (its cluster bus) free, p below 55536, none in `taken`."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55536 and port not in found and port not in taken and _port_free(port + 10000):
            found.append(port)
    return found


def redis_cli() -> str:
    """The redis-cli beside the redis-server the tests use (the same release), else the one on PATH."""
    server = find_redis_server()
    if server:
        beside = Path(server).with_name("redis-cli")
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    found = shutil.which("redis-cli")
    if not found:
        raise RuntimeError("redis-cli not found (Debian: redis-tools)")
    return found


@dataclass
class LocalCluster:
    masters: int = 3
    replicas: int = 1
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The dialer's URL form for it: every node as a seed (docs/redis.md)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 60.0) -> LocalCluster:
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS))
        for _ in range(self.masters * (1 + self.replicas)):
            self.nodes.append(self._start_node(extra))
        subprocess.run([redis_cli(), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        self.wait_ok(timeout)
        return self

    def _start_node(self, extra: tuple[str, ...], tries: int = 5) -> RedisProcess:
        """One node on ports found free; again on others when it cannot bind them. Another test's server can take a
        port (or its +10000 bus port) between the check and the start (a CI run lost a node at start, most likely
        that way; its log was gone)."""
        for attempt in range(tries):
            node = RedisProcess(port=cluster_ports(1, taken={n.port for n in self.nodes})[0], extra_args=extra)
            try:
                return node.start()
            except RuntimeError:
                log = Path(node.directory) / "redis.log"
                busy = log.is_file() and "Address already in use" in log.read_text(errors="replace")
                node.cleanup()
                if not busy or attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def node_client(self, node: RedisProcess) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2, socket_connect_timeout=2)

    def alive(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says cluster_state:ok and every replica has synced."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = []
                for node in self.alive():
                    with self.node_client(node) as client:
                        states.append(client.cluster("info")["cluster_state"] == "ok")
                        replication = client.info("replication")
                        if replication["role"] == "slave":
                            states.append(replication.get("master_link_status") == "up")
                        elif self.replicas and len(self.alive()) == len(self.nodes):
                            states.append(int(replication.get("connected_slaves", 0)) >= self.replicas)
                if all(states):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def master_of(self, key: str) -> RedisProcess:
        """The node currently serving `key`'s slot."""
        slot = redis.cluster.key_slot(key.encode())
        for node in self.alive():
            with self.node_client(node) as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no node serves slot {slot}")

    def role(self, node: RedisProcess) -> str:
        with self.node_client(node) as client:
            return client.info("replication")["role"]

    def flush(self) -> None:
        for node in self.alive():
            with self.node_client(node) as client:
                if client.info("replication")["role"] == "master":
                    client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.cleanup()
        self.nodes.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
