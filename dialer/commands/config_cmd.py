"""`dialer config check`: load and validate the settings, print them (secrets hidden)."""

from __future__ import annotations

import argparse
from typing import Any

from dialer.config import SETTINGS, Config


def register(sub: Any) -> None:
    parser = sub.add_parser("config", help="check the settings")
    parser.add_argument("action", choices=["check"], help="check: validate and print the settings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, config: Config) -> int:
    print(f"settings from {config.source}: OK")
    for setting in SETTINGS:
        value = config[setting.name]
        if "secret" in setting.name and value:
            value = "(set)"
        print(f"  {setting.name} = {value!r}  [{setting.env}]")
    for server in config.asterisk:
        print(f"  asterisk {server.name}: {server.username}@{server.host}:{server.port} auth={server.auth}")
    return 0
