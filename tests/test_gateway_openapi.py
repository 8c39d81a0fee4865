"""The OpenAPI document matches the app: same routes both ways, a valid OpenAPI 3 document, and
schemathesis-generated requests against a live `dialer serve` never get a 500 or an off-spec answer."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dialer.config import load_config
from dialer.facts import person_key
from dialer.gate import attempt_record, call_index_key
from gateway.app import api_routes, make_app
from gateway.auth import AuthStore
from tests.gateway_support import imported_list

ROOT = Path(__file__).resolve().parent.parent


def app_routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if path is None or route.method == "HEAD" or path in ("/",) or "directory" in info:
            continue  # dashboard pages and static assets are not API
        found.add((route.method, path))
    return found


async def test_document_and_app_list_the_same_routes(redis_url):
    config = load_config(env={"DIALER_REDIS_URL": redis_url})
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    app = make_app(config, client)
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(app)) as http:
        resp = await http.get("/v1/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
    await client.aclose()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == app_routes(app)
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, ops in doc["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), path


def test_document_is_valid_openapi():
    import openapi_spec_validator as validator

    from gateway.app import api_routes, openapi_route
    from gateway.openapi import document
    routes = api_routes()
    doc = document([*routes, openapi_route(routes)])
    validator.validate(doc)
    op = doc["paths"]["/v1/imports"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"] and "413" in op["responses"]


# --- schemathesis against a live server -----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_gateway(redis_url, tmp_path):
    upload_dir = tmp_path / "uploads"
    async def seed() -> str:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = AuthStore(client)
        await store.create_tenant("acme")
        await store.create_tenant("fuzz-target")  # what the operator routes suspend: never the fuzzing tenant
        await store.create_user("acme", "boss", "admin")
        token, _ = await store.create_token("acme", "boss")
        # A call the gate reserved for acme (attempt and call index as the gate writes them): a real call id.
        await client.hset(person_key("acme", "+33145678901", "att"), "fuzz-call",
                          attempt_record(datetime.now(UTC), "c1", "fuzz-call"))
        await client.set(call_index_key("acme", "fuzz-call"), "+33145678901")
        await client.aclose()
        return token

    token = asyncio.run(seed())
    port = free_port()
    env = {**os.environ, "DIALER_REDIS_URL": redis_url, "DIALER_LOG_LEVEL": "WARNING",
           "DIALER_SECRET_KEY": "schemathesis-secret", "DIALER_GATEWAY_REGISTRY_TENANTS": "acme",
           "DIALER_GATEWAY_OPERATOR_TENANTS": "acme",
           "DIALER_GATEWAY_UPLOAD_DIR": str(upload_dir), "DIALER_RECORD_URL": f"sqlite:///{tmp_path}/record.db"}
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90  # generous: 4 servers starting at once on 2 loaded cores took over 20 s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("dialer serve exited: " + proc.stderr.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("dialer serve did not start: " + proc.stderr.read().decode())
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    _, stderr = proc.communicate(timeout=10)
    assert b"Traceback" not in stderr, stderr.decode()


# Every JSON route (the event streams never end, so a generated request would hang on them), in groups: each group
# fuzzes its operations one after another against one server and one seeded world, so a run is the same every
# time (the operations of a group always run in this order) and 88 operations cost a few server starts, not 88.
OPERATIONS = sorted((r.method, r.path) for r in api_routes() if r.content_type == "application/json")
# Two tiers (README, "Tests"): the default suite sends every operation SMOKE_EXAMPLES cases (positive and negative
# alike, each checked by every check below), in a few groups; the `deep` tier (DIALER_DEEP_TESTS=1, which .ci/run
# sets after the default suite) sends DEEP_EXAMPLES, in more groups so that xdist spreads them. The full fuzz was
# 104 of the default suite's 650 CPU-seconds.
SMOKE_EXAMPLES, SMOKE_GROUPS = 6, 3
DEEP_EXAMPLES, DEEP_GROUPS = 40, 11


def grouped(groups: int) -> list[list[tuple[str, str]]]:
    return [OPERATIONS[i::groups] for i in range(groups)]


def seed_world(base_url: str, token: str, redis_url: str) -> dict[str, str]:
    """Real resources for path ids to point at, so the handlers behind the 404 check get exercised too."""
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    imported_list(redis_url, "acme", "l1")  # a campaign may only name lists that exist
    made = requests.post(f"{base_url}/v1/campaigns", headers=headers, timeout=10,
                         json={"name": "fuzz", "caller_id": "+33145678900", "seller_name": "Acme", "lists": ["l1"],
                               "queue": "sales"}).json()
    requests.post(f"{base_url}/v1/campaigns/{made['id']}/start", headers=headers, timeout=10)
    requests.post(f"{base_url}/v1/users", headers=headers, json={"name": "target", "role": "uploader"}, timeout=10)
    token_id = requests.post(f"{base_url}/v1/tokens", headers=headers, json={"user": "target"}, timeout=10).json()["id"]
    # A committed list (imported as a worker would), its contacts in the campaign, a registry upload.
    import_id = imported_list(redis_url, "acme", "fuzzlist", campaign=made["id"])
    job = requests.post(f"{base_url}/v1/registries/bloctel/imports", headers=headers, timeout=10,
                        files={"file": ("b.txt", b"0145678901\n")}).json()["id"]
    hook = {"url": "https://hooks.example.com/fuzz", "events": ["optout.recorded"]}
    endpoint_id = requests.post(f"{base_url}/v1/webhooks", headers=headers, timeout=10, json=hook).json()["id"]
    request_id = requests.post(f"{base_url}/v1/subject-requests", headers=headers, timeout=10,
                               json={"kind": "access", "regime": "GDPR", "contact_id": "fuzz"}).json()["id"]
    return {"endpoint_id": endpoint_id, "event_id": "evt_fuzz", "id": made["id"], "name": "target",
            "token_id": token_id, "import_id": import_id,
            "list_id": "fuzzlist", "contact": f"{import_id}-2", "contact_id": f"{import_id}-3",
            "job_id": job, "call_id": "fuzz-call", "request_id": request_id,
            "tenant": "fuzz-target"}


def fuzz_operation(schema, base_url: str, token: str, real: dict[str, str], method: str, path: str,
                   examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.parameters import ParameterLocation
    from schemathesis.generation import GenerationMode

    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {token}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              negative_data_rejection]
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE)
    lenient = [c for c in checks if c is not negative_data_rejection]

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        # We always send a valid token, and we point valid-looking path values at real resources, so
        # "invalid data must be rejected" only holds for cases whose invalid part is the body or query.
        overridden = case.meta is not None and (case.meta.is_negative_at(ParameterLocation.PATH)
                                                or case.meta.is_negative_at(ParameterLocation.HEADER))
        if not overridden:
            for key in case.path_parameters or {}:
                case.path_parameters[key] = real[key]
        case.call_and_validate(base_url=base_url, headers=headers, checks=lenient if overridden else checks)

    run()


@pytest.mark.parametrize("groups", [SMOKE_GROUPS, DEEP_GROUPS])
def test_every_json_operation_is_in_one_group(groups):
    assert sorted(op for group in grouped(groups) for op in group) == OPERATIONS and all(grouped(groups))


def fuzz_group(live_gateway, redis_url: str, group: list[tuple[str, str]], examples: int) -> None:
    import schemathesis

    base_url, token = live_gateway
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    real = seed_world(base_url, token, redis_url)
    failures = []
    for method, path in group:  # every operation of the group runs, and every failure is reported by name
        try:
            fuzz_operation(schema, base_url, token, real, method, path, examples)
        except Exception as exc:  # hypothesis raises the shrunk example's own error
            failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("group", grouped(SMOKE_GROUPS), ids=[f"group{i + 1}" for i in range(SMOKE_GROUPS)])
def test_schemathesis_smoke_finds_no_server_error(live_gateway, redis_url, group):
    fuzz_group(live_gateway, redis_url, group, SMOKE_EXAMPLES)


@pytest.mark.deep
@pytest.mark.parametrize("group", grouped(DEEP_GROUPS), ids=[f"group{i + 1}" for i in range(DEEP_GROUPS)])
def test_schemathesis_finds_no_server_error(live_gateway, redis_url, group):
    fuzz_group(live_gateway, redis_url, group, DEEP_EXAMPLES)
