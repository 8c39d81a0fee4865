"""OS processes for the race tests (the gate, the audit chain, the agent pool, the trunk): real processes racing on
one Redis, each with its own connections and a fresh interpreter state.

They come from a fork server (multiprocessing's "forkserver"), not "spawn": a spawned process imports its test
module and everything under it again, about a CPU-second each and 34 of them in the default suite. The fork server
is a clean process started once per test process, which imports those modules once; each racer is a fork of it, so
it shares nothing with the test process (no inherited connections, threads or locks) as with spawn."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

# What the racers run (their target functions live there); a module missing here is imported by the racer itself.
PRELOAD = ["tests.test_gate", "tests.test_audit", "tests.test_runtime_agentpool", "tests.test_runtime_trunk"]


def race_context() -> BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # only read when the server starts (the first racer of a test process)
    return ctx
