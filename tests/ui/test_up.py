"""``make up`` (scripts/up.sh): prints the Segmentation URL, unpauses the segmentation DAGs, serves the plugin,
and stopping it leaves no Airflow process behind (standalone's scheduler, api-server, triggerer,
dag-processor and LocalExecutor workers all run in one session that the script ends as a whole)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from segmentation.config import get_settings
from tests.conftest import create_database, drop_database
from tests.ui.conftest import ROOT

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live processes of a session; zombies have exited and are PID 1's to reap once their parent is gone."""
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--sid", str(sid)], capture_output=True, text=True, check=False)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return [int(pid) for pid, stat in rows if not stat.startswith("Z")]


def _describe(pids: list[int]) -> str:
    if not pids:
        return ""
    out = subprocess.run(["ps", "-o", "pid=,ppid=,stat=,args=", "-p", ",".join(map(str, pids))],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout


def _status(url: str) -> int | None:
    request = urllib.request.Request(url, method="GET")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def _paused(airflow_url: str) -> dict[str, bool]:
    import psycopg2

    with psycopg2.connect(airflow_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT dag_id, is_paused FROM dag WHERE dag_id LIKE 'segmentation%%'")
        return dict(cur.fetchall())


@pytest.mark.parametrize("keep_paused", [False, True], ids=["unpaused", "keep-paused"])
def test_make_up_serves_the_plugin_and_leaves_no_process_behind(tmp_path: Path, keep_paused: bool) -> None:
    customers = create_database("seg_up")
    airflow = create_database("seg_up_airflow")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "SEGMENTATION_DATABASE_URL": customers,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow.replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW__API__PORT": str(port),
        "SEGMENTATION_KEEP_PAUSED": "1" if keep_paused else "0",
    }
    env.pop("AIRFLOW_CONN_SEGMENTATION_DB", None)
    log = tmp_path / "up.log"
    sid = None
    with log.open("w") as out:
        up = subprocess.Popen([str(ROOT / "scripts" / "up.sh")], env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while _status(f"http://127.0.0.1:{port}/segmentation/") != 303:
            assert up.poll() is None, f"up.sh exited with {up.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no Segmentation app on port {port}:\n{log.read_text()[-4000:]}"
            time.sleep(2)
        text = log.read_text()
        assert f"Segmentation: http://localhost:{port}/segmentation/" in text
        paused = _paused(airflow)
        expected = keep_paused
        assert paused["segmentation_nightly"] is expected and paused["segmentation_retrain"] is expected, paused
        sid = int((get_settings().data_dir / "airflow-standalone.sid").read_text())
        assert len(_session_pids(sid)) >= 4, "standalone runs its components as separate processes"

        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
        left = _session_pids(sid)
        assert left == [], f"left behind: {_describe(left)}\n{log.read_text()[-3000:]}"
        assert _session_pids(up.pid) == []
        assert _status(f"http://127.0.0.1:{port}/segmentation/") is None
    finally:
        for group in {up.pid, sid} - {None}:
            for pid in _session_pids(group):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        up.wait(timeout=30)
        drop_database(airflow)
        drop_database(customers)
