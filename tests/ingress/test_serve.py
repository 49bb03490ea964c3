"""``goldenroute serve`` and the ingress inside ``goldenroute dev``: real sockets, real uvicorn."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from starter.ingress.http import EVENTS_PATH, create_app
from starter.serve import DEV_SECRET_FILE, DEV_SOURCE, serve, serving
from tests.ingress.test_http import SECRET, SETTINGS, SOURCE, event, logged, member, signed
from worker.devstack import DevStack, free_port
from worker.settings import Settings

BIN = Path(sys.executable).parent


async def test_serving_answers_over_tcp_and_stops_listening_on_exit(pool):
    app = create_app(SETTINGS, pool, None, None)
    async with serving(app, None, "127.0.0.1", 0) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        m = member()
        body = json.dumps(event(m)).encode()
        response = await http.post(EVENTS_PATH, content=body, headers=signed(body))
        assert response.status_code == 200 and await logged(pool, m) == 1
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/healthz")


async def test_a_busy_port_is_named():
    with __import__("socket").create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with serving(create_app(SETTINGS, None, None, None), None, "127.0.0.1", port):
                pass


@pytest.mark.parametrize("settings, host, insecure, refusal", [
    (Settings(), None, False, "no ingress secrets"),
    (Settings(), "0.0.0.0", True, "127.0.0.1 only"),
])
async def test_serve_refuses_to_start_unsafely(settings, host, insecure, refusal):
    with pytest.raises(RuntimeError, match=refusal):
        await serve(settings, host, 0, insecure)


def _address(env) -> str:
    return env.client.service_client.config.target_host


async def test_the_dev_stack_serves_the_ingress_signed_with_a_generated_dev_secret(
        tmp_path, dev_server_env, database_url, pool):
    settings = Settings(home=tmp_path, temporal_address=_address(dev_server_env), database_url=database_url,
                        ingress_port=free_port())
    async with DevStack(settings) as stack:
        ingress = await stack.start_ingress()
        assert (ingress.url, ingress.source) == (f"http://127.0.0.1:{settings.ingress_port}", DEV_SOURCE)
        m = member()
        body = json.dumps(event(m)).encode()
        async with httpx.AsyncClient(base_url=ingress.url) as http:
            assert (await http.get("/readyz")).json() == {"postgresql": "ok", "temporal": "ok"}
            response = await http.post(EVENTS_PATH, content=body, headers=signed(body, ingress.secret, DEV_SOURCE))
            assert response.status_code == 200 and await logged(pool, m) == 1
    secret_file = tmp_path / DEV_SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    async with DevStack(settings) as stack:  # the same secret the next time
        assert (await stack.start_ingress()).secret == ingress.secret == secret_file.read_text()


def test_goldenroute_serve_stops_gracefully_on_sigterm(tmp_path, dev_server_env, database_url):
    port = free_port()
    env = {**os.environ, "TEMPORAL_ADDRESS": _address(dev_server_env), "DATABASE_URL": database_url,
           "INGRESS_PORT": str(port), "GOLDENROUTE_INGRESS_SECRETS": f"{SOURCE}={SECRET}",
           "GOLDENROUTE_HOME": str(tmp_path), "LOG_FORMAT": "json", "METRICS_PORT": "0"}
    command = [str(BIN / "goldenroute")] if (BIN / "goldenroute").exists() else [sys.executable, "-m", "starter.cli"]
    with (tmp_path / "serve.log").open("w+") as output:
        process = subprocess.Popen([*command, "serve", "--host", "127.0.0.1"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
        output.seek(0)
        events = [json.loads(line)["event"] for line in output if line.startswith("{")]
    assert {"ingress.started", "ingress.stopping", "ingress.stopped"} <= set(events)
    assert SECRET not in (tmp_path / "serve.log").read_text()
