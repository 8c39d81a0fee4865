"""Issue 16 point 10 (local files and the access log): staged uploads and exports are 0600 in 0700
directories, a world-writable upload directory is refused (API 503, `dialer serve` exits with one line), the
default data directory is private and not the system temporary directory, and the real gateway's access log
names the client address."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import aiohttp
import redis

from dialer.config import load_config
from dialer.private_files import UnsafeDirectory, data_dir, default_data_dir, private_dir
from tests.gateway_process import ROOT, serve
from tests.gateway_support import SAMPLE_LIST, imported_list, start_gateway, stop_gateway


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def form() -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("list", "spring")
    data.add_field("file", SAMPLE_LIST.encode(), filename="clients.csv", content_type="text/csv")
    return data


async def test_staged_uploads_are_0600_in_a_0700_directory(redis_url, tmp_path):
    os.umask(0o022)
    up = tmp_path / "deep" / "uploads"
    gw = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(up))
    try:
        resp = await gw.client.post("/v1/imports", data=form(), headers=gw.auth("acme", "uploader"))
        assert resp.status == 202, await resp.text()
    finally:
        await stop_gateway(gw)
    assert mode(up) == 0o700
    [staged] = list(up.iterdir())
    assert mode(staged) == 0o600


async def test_a_world_writable_upload_directory_is_refused(redis_url, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    gw = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(shared))
    try:
        resp = await gw.client.post("/v1/imports", data=form(), headers=gw.auth("acme", "uploader"))
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "upload_dir_unsafe" and "world-writable" in error["message"]
    finally:
        await stop_gateway(gw)
    assert list(shared.iterdir()) == []
    env = {**os.environ, "DIALER_GATEWAY_UPLOAD_DIR": str(shared), "DIALER_REDIS_URL": redis_url,
           "PYTHONPATH": str(ROOT)}
    env.pop("DIALER_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "dialer", "serve", "--port", "1"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "world-writable" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_default_data_directory_is_private_not_the_temp_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME")  # the test session's own (tests/conftest.py) is a temporary directory
    home = tmp_path / "home"
    assert default_data_dir({"HOME": str(home)}) == home / ".local" / "share" / "dialer"
    assert default_data_dir({"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "dialer"
    config = load_config(env={})
    assert not str(data_dir(config)).startswith(tempfile.gettempdir())
    assert load_config(env={})["gateway.upload_dir"] == ""  # so uploads go under the data directory
    made = private_dir(tmp_path / "a" / "b")
    assert mode(made) == 0o700
    try:
        private_dir(Path(tempfile.gettempdir()))
    except UnsafeDirectory as exc:
        assert "world-writable" in str(exc)
    else:
        raise AssertionError("the system temporary directory was accepted")


def test_cli_export_and_export_job_files_are_0600(redis_url, tmp_path):
    os.umask(0o022)
    imported_list(redis_url, "acme", "spring")
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    env.pop("DIALER_CONFIG", None)
    out = tmp_path / "contacts.csv"
    done = subprocess.run([sys.executable, "-m", "dialer", "lists", "export", "contacts", "--tenant", "acme",
                           "--list", "spring", "-o", str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o600
    from rq import Queue

    from dialer.contacts.export import export_job

    client = redis.Redis.from_url(redis_url)
    try:
        job_out = tmp_path / "job.csv"
        # the job as a worker runs it (rq's synchronous mode: same job context, no worker process to stop)
        job = Queue("exports", connection=client, is_async=False).enqueue(export_job, "acme", "contacts",
                                                                          str(job_out), "spring")
        assert job.return_value() == 2
    finally:
        client.close()
    assert mode(job_out) == 0o600


def test_the_access_log_names_the_client_address(redis_url, tmp_path):
    gateway = serve(redis_url, tmp_path / "gateway.log", DIALER_LOG_LEVEL="INFO")
    try:
        try:
            urllib.request.urlopen(gateway.base + "/v1/me", timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        gateway.stop()
    lines = [line for line in gateway.log().splitlines() if "GET /v1/me 401" in line]
    assert lines and "from 127.0.0.1" in lines[0], gateway.log()[-2000:]
