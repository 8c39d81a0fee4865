"""Which Asterisk a configured server really is: what it says after login, not the address we reach it by.

One PBX reached as `127.0.0.1:5038` by one dialer process and as `localhost:5038` by another (or through two
DNS names, or a NAT) would be counted as two trunks, each allowed the full channels and calls per second. After
each login the engine asks the server (AMI `Getvar`, no channel: Asterisk's builtin variables):

  SYSTEMNAME  asterisk.conf `systemname`: the operator's name for the server, empty unless set
  ENTITYID    asterisk.conf `entityid`, by default a MAC address of the machine
  ASTETCDIR   the instance's configuration directory (two Asterisks on one machine share the MAC)

The shared trunk keys (dialer/runtime/trunk.py) use `asterisk:` + the system name when one is set, else the
entity id and configuration directory; every process that reaches the server, by any address, counts its calls
in the same sets. A server is not dialed through until its identity is known, and two configured servers that turn
out to be one Asterisk are refused (the second name is not used; one ERROR line says which). Engines publish
address -> identity in Redis for `dialer trunk status`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from dialer.ami.client import AMIError

log = logging.getLogger(__name__)

IDENTITY_TTL = 7 * 24 * 3600  # the address -> identity entries `dialer trunk status` reads


def identity_key(address: str) -> str:
    return f"dialer:trunk:identity:{address}"


@dataclass(frozen=True)
class ServerIdentity:
    system_name: str
    entity_id: str
    etc_dir: str

    @property
    def key(self) -> str:
        """The trunk's name in Redis (shared by every process that dials through this Asterisk)."""
        if self.system_name:
            return f"asterisk:{self.system_name}"
        digest = hashlib.sha256(f"{self.entity_id}\n{self.etc_dir}".encode()).hexdigest()[:12]
        return f"asterisk:{self.entity_id or 'no-eid'}:{digest}"

    def describe(self) -> str:
        if self.system_name:
            return f"system name {self.system_name!r}"
        return f"entity id {self.entity_id or '?'}, configuration {self.etc_dir or '?'}"


async def read_identity(client: Any, timeout: float = 5.0) -> ServerIdentity:
    values = []
    for variable in ("SYSTEMNAME", "ENTITYID", "ASTETCDIR"):
        response = await client.action("Getvar", {"Variable": variable}, timeout=timeout)
        values.append((response.get("Value") or "").strip())
    if not values[1] and not values[0]:
        raise AMIError(f"AMI {client.name}: the server gave neither a system name nor an entity id")
    return ServerIdentity(*values)


class ServerIdentities:
    """The identities of this process's servers; swaps each server's trunk address for its identity."""

    def __init__(self, pool: Any, trunk: Any, redis_client: Any) -> None:
        self.pool = pool
        self.trunk = trunk
        self.redis = redis_client
        self.known: dict[str, ServerIdentity] = {}
        self.refused: dict[str, str] = {}  # server name -> the name it duplicates
        # server name -> the last identity it gave: kept across reconnects, so the pacing group does not flap
        self.seen: dict[str, str] = {}
        self._addresses = {name: t.address for name, t in trunk.trunks.items()}  # as configured (host:port)
        for name, client in pool.clients.items():
            client.on_reconnect(self._forget(name))

    def _forget(self, name: str) -> Any:
        async def after_reconnect(_client: Any) -> None:
            # another process may answer on that address now (a restart, a failover): ask again before dialing
            self.known.pop(name, None)
            self.refused.pop(name, None)

        return after_reconnect

    def group_names(self) -> list[str]:
        """What names this process's servers for its pacing group: each server's identity once it has given one,
        its address until then (dialer.runtime.engine.pbx_group_of)."""
        return [self.seen.get(name, address) for name, address in self._addresses.items()]

    def usable(self, name: str) -> bool:
        return name in self.known and name not in self.refused

    async def refresh(self) -> None:
        """Learn the identity of every connected server that has none yet."""
        for name, client in self.pool.clients.items():
            if client.connected and name not in self.known:
                try:
                    identity = await read_identity(client)
                except (TimeoutError, AMIError) as exc:
                    log.warning("AMI %s: identity not read (%s); not dialed through until it is", name, exc)
                    continue
                await asyncio.to_thread(self._adopt, name, identity)

    def _adopt(self, name: str, identity: ServerIdentity) -> None:
        twin = next((other for other, known in self.known.items()
                     if other != name and known.key == identity.key and other not in self.refused), None)
        self.known[name] = identity
        self.seen[name] = identity.key
        if twin is not None:
            self.refused[name] = twin
            log.error("servers %s (%s) and %s (%s) are one Asterisk (%s): %s is not used; configure each server "
                      "once", twin, self._addresses.get(twin), name, self._addresses.get(name), identity.describe(),
                      name)
            return
        trunk = self.trunk.trunks.get(name)
        if trunk is not None and trunk.address != identity.key:
            self.trunk.trunks[name] = dataclasses.replace(trunk, address=identity.key)
        address = self._addresses.get(name)
        if address:
            self.redis.set(identity_key(address), identity.key, ex=IDENTITY_TTL)
        log.info("AMI %s: Asterisk %s; trunk counted as %s", name, identity.describe(), identity.key)
