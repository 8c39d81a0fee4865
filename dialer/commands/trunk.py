"""`dialer trunk status`: each Asterisk server's trunk as every dialer process together uses it, whether it is
draining (refusing Originates: shutting down, restarting; dialer/runtime/servers.py), and the live dialer processes
(what an engineer checks when calls go out slower than the agents could take them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import redis

from dialer import redisconn
from dialer.cli import redis_unreachable
from dialer.config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser("trunk", help="trunk ceilings shared by the dialer processes")
    actions = parser.add_subparsers(dest="trunk_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="channels in use and recent originates per server, live processes")
    status.add_argument("--sandbox", metavar="HOST:PORT", help="a sandbox PBX instead of the [[asterisk]] servers")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=run_status, sandbox_user="dialer", sandbox_secret="-")  # (no AMI login here)


def run_status(args: argparse.Namespace, config: Config) -> int:
    from dialer.commands.run import _servers
    from dialer.pacing import cps_window
    from dialer.runtime.engine import RuntimeSettings, process_key, trunk_of
    from dialer.runtime.identity import identity_key
    from dialer.runtime.servers import draining_servers
    from dialer.runtime.trunk import TrunkBudget, server_address

    servers = _servers(args, config)
    by_name = {s.name: s for s in servers}
    settings = RuntimeSettings.from_config(config)
    client = redisconn.connect(config.redis_url)
    try:
        trunks = {s.name: trunk_of(s, settings) for s in servers}
        # counted under the identity the engines read from Asterisk after login (dialer/runtime/identity.py)
        identities = {name: client.get(identity_key(t.address)) for name, t in trunks.items()}
        trunks = {name: dataclasses.replace(t, address=identities[name].decode()) if identities[name] else t
                  for name, t in trunks.items()}
        budget = TrunkBudget(client, trunks, lease_seconds=settings.lease_seconds)
        usage = budget.usage(trunks)
        draining = draining_servers(client, {s.name: server_address(s.host, s.port) for s in servers})
        seconds, micros = client.time()  # heartbeats are stamped on Redis's clock
        now = seconds + micros / 1e6
        processes = []
        for key in sorted(client.scan_iter(match=process_key("*"), count=500)):
            raw = client.get(key)
            if raw is not None:
                info = json.loads(raw)
                info["id"] = key.decode().removeprefix(process_key(""))
                processes.append(info)
    except redis.RedisError as exc:
        raise redis_unreachable(config.redis_url, exc) from None
    finally:
        client.close()
    rows = []
    for name, trunk in trunks.items():
        calls, window = cps_window(trunk.calls_per_second)
        seen = usage.get(name)
        configured = server_address(by_name[name].host, by_name[name].port)
        rows.append({"server": name, "address": configured,
                     "identity": trunk.address if trunk.address != configured else None,
                     "channel_limit": trunk.channels or None,
                     "channels_in_use": seen.channels_in_use if seen and trunk.channels else None,
                     "calls_per_window": calls or None, "window_seconds": window / 1000 if calls else None,
                     "originates_in_window": seen.originates_in_window if seen and calls else None,
                     "state": "draining" if name in draining else "dialing", "draining": draining.get(name)})
    if args.json:
        print(json.dumps({"servers": rows, "processes": processes}, sort_keys=True))
        return 0
    print(f"{'server':<12} {'address':<24} {'channels in use':<18} originates")
    for row in rows:
        channels = (f"{row['channels_in_use']} / {row['channel_limit']}" if row["channel_limit"]
                    else "no limit")
        cps = (f"{row['originates_in_window']} / {row['calls_per_window']} in {row['window_seconds']:g} s"
               if row["calls_per_window"] else "no limit")
        print(f"{row['server']:<12} {row['address']:<24} {channels:<18} {cps}")
        if row["identity"]:
            print(f"{'':<12} counted as {row['identity']} (what Asterisk said after login, whatever the address)")
    for row in rows:
        if row["draining"]:
            info = row["draining"]
            print(f"{row['server']}: DRAINING for {max(0.0, now - float(info.get('since', now))):.0f} s, no calls "
                  f"placed there: {info.get('message') or '?'} ({info.get('refused', 0)} Originates refused and given "
                  f"back; seen by {info.get('process', '?')})")
    if not any(row["channel_limit"] or row["calls_per_window"] for row in rows):
        print("(no trunk ceiling set: runtime.trunk_channels / runtime.calls_per_second, or per [[asterisk]] table)")
    print(f"\n{len(processes)} dialer process(es) alive")
    for info in processes:
        print(f"  {info['id']}: {info.get('in_flight', 0)} calls in flight, {info.get('placed', 0)} placed, "
              f"heartbeat {max(0.0, now - float(info.get('at', now))):.0f} s ago")
    return 0
