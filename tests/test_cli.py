"""The `dialer` command line as a new user meets it: version, help everywhere, options where they are typed,
one clear line when something is missing (a busy port, a Redis that is down), a progress bar that shows."""

from __future__ import annotations

import argparse
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dialer import __version__
from dialer.cli import COMMAND_MODULES, COMMANDS, build_parser, command_named, shown_url, subcommand_parsers

ROOT = Path(__file__).resolve().parents[1]
DOWN = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1; the password must never be printed


def dialer(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dialer", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DIALER_CONFIG": "", **(env or {})},
                          timeout=timeout)


def test_version() -> None:
    done = dialer("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"dialer {__version__}"


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
               for parser in [build_parser(), *subcommand_parsers(build_parser())]
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and action.dest != "help" and not action.help]
    assert missing == []


def test_each_command_is_found_in_the_module_the_table_names() -> None:
    import importlib

    registered = {}
    for module in COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered.update(dict.fromkeys(sub.choices, module))
    assert registered == COMMAND_MODULES  # a new command goes in both tables
    full = {parser.prog: sorted(parser._option_string_actions) for parser in subcommand_parsers(build_parser())}
    for name in registered:  # the parser built for one command knows it exactly as the full parser does
        alone = {parser.prog: sorted(parser._option_string_actions)
                 for parser in subcommand_parsers(build_parser(name))}
        top = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert name in top.choices and all(full[prog] == options for prog, options in alone.items())
    assert command_named(["--config", "campaigns", "dnc", "check"]) == "dnc"
    assert command_named(["--config=x.toml", "campaigns", "list"]) == "campaigns"
    assert command_named(["--version"]) is None


def test_a_subcommands_help_is_its_own() -> None:
    done = dialer("audit", "verify", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: dialer audit verify")
    assert "--all" in done.stdout and "--limit" not in done.stdout  # show's options belong to show


def test_global_options_are_accepted_after_the_subcommand(tmp_path: Path) -> None:
    path = tmp_path / "dialer.toml"
    path.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\n')
    before, after = dialer("--config", str(path), "config", "check"), dialer("config", "check", "--config", str(path))
    assert "unrecognized arguments" not in after.stderr
    assert (after.returncode, after.stdout) == (before.returncode, before.stdout)
    assert "redis://127.0.0.1:1/0" in after.stdout + after.stderr  # the file was read


@pytest.mark.parametrize("command", [
    ["audit", "verify", "--tenant", "t"],
    ["lists", "status", "imp1", "--tenant", "t"],
    ["registry", "status"],
    ["registry", "lookup", "+33612345678"],
    ["token", "list", "--tenant", "t"],
    ["retention", "policy", "--tenant", "t"],
    ["calls", "disposition", "--tenant", "t", "call1", "answered"],
    ["serve", "--port", "0"],
])
def test_redis_down_is_one_line_naming_the_server_without_its_password(command: list[str]) -> None:
    done = dialer(*command, env={"DIALER_REDIS_URL": DOWN, "DIALER_SECRET_KEY": "k"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_shown_url_hides_only_the_password() -> None:
    assert shown_url("redis://user:pw@h:6379/2") == "redis://user:***@h:6379/2"
    assert shown_url("redis://h:6379/0") == "redis://h:6379/0"


def test_serve_on_a_busy_port_is_one_line(redis_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = dialer("serve", "--host", "127.0.0.1", "--port", str(port), env={"DIALER_REDIS_URL": redis_url})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: port already in use" in done.stderr


def test_serve_port_0_picks_a_free_port_and_says_which(redis_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", "0"], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DIALER_CONFIG": "",
                                 "DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": "k"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gateway on http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert port not in (0, 8080)
        deadline = time.monotonic() + 30
        while True:  # it really listens there
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run `args` on a pseudo-terminal that reports no size (as some multiplexers and IDE consoles do)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(sys.executable, [sys.executable, *args], env)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out.extend(chunk)
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return out.decode(errors="replace")


def test_registry_import_shows_a_progress_bar_and_its_summary_once(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bloctel.txt"
    path.write_text("".join(f"+3361{n:07d}\n" for n in range(0, 3_000_000, 60)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_CONFIG": "", "DIALER_REDIS_URL": redis_url}
    text = run_in_terminal(["-m", "dialer", "registry", "import", "--registry", "bloctel", "--file", str(path),
                            "--country", "FR"], env)
    assert "reading:" in text and "%|" in text, text  # the bar was drawn
    assert text.count("version 1 live") == 1, text  # the summary, not also a log line
