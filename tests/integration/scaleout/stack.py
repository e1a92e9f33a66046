"""A real Airflow deployment with the CeleryExecutor, started from the virtualenv without Docker.

``celery_stack()`` creates a fresh metadata database on the machine's PostgreSQL, claims an
empty Redis database as the Celery broker, migrates, and starts ``api-server``, ``scheduler``,
``dag-processor`` and two ``celery worker`` processes as subprocesses sharing one environment.
Each process runs in its own process group; on exit every group is terminated (then killed),
each process's output is copied to ``test-artifacts/scaleout/<name>.log`` and the task logs to
``test-artifacts/scaleout/task-logs/``, and the metadata database and the Redis database are
dropped, whether the test passed or not. While it runs, the outputs are in the run's own
folder (``<home>/../process-logs``), so two runs at once never write to each other's files.

:class:`Stack` then talks to the api-server's public REST API with a JWT from the
SimpleAuthManager's ``POST /auth/token``, as any client of a deployment would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.fixtures.store import LOCAL_SERVER

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "scaleout"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REDIS_URL = os.environ.get("CAMPAIGNS_TEST_REDIS", "redis://127.0.0.1:6379")
# Broker databases this test may claim; 0-6 are left to whatever else uses the server.
REDIS_DBS = range(7, 16)
REDIS_CLAIM_KEY = "campaigns-scaleout:owner"
ADMIN = "admin"
WORKERS = ("worker1", "worker2")


class StackError(AssertionError):
    """The stack did not come up or a process died: the message carries the logs' tails."""


def services_available() -> str | None:
    """Why the stack cannot run here (no TCP PostgreSQL or no Redis), or None."""
    try:
        with psycopg.connect(LOCAL_SERVER, connect_timeout=2):
            pass
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL at {LOCAL_SERVER}: {exc}"
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL}: {exc}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:]


@dataclass
class Stack:
    """A running deployment: its environment, processes and REST API."""

    env: dict[str, str]
    home: Path
    api_url: str
    password: str
    metadata_db: str
    broker_url: str
    deadline: float = float("inf")
    """``time.monotonic()`` after which every wait fails: the whole test's time budget."""
    processes: dict[str, Process] = field(default_factory=dict)
    _token: str | None = None

    # -- processes ---------------------------------------------------------------------------

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log_path = self.home.parent / "process-logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown reaches its children
            )
        process = Process(name, popen, log_path)
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        dead = {n: p.popen.returncode for n, p in self.processes.items() if p.popen.poll() is not None}
        if dead:
            raise StackError(f"Airflow process(es) exited: {dead}\n\n{self.tails()}")

    def tails(self, chars: int = 2500) -> str:
        return "\n\n".join(f"===== {n} ({p.log_path}) =====\n{p.tail(chars)}" for n, p in self.processes.items())

    def wait_for(self, what: str, probe, timeout: float, interval: float = 0.5) -> Any:
        """Call ``probe`` until it returns something truthy; fail with the logs after ``timeout``
        seconds, or sooner if the stack's overall deadline comes first."""
        started = time.monotonic()
        deadline = min(started + timeout, self.deadline)
        while True:
            self.check_alive()
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise StackError(
                    f"timed out after {time.monotonic() - started:.0f} s waiting for {what}\n\n{self.tails()}"
                )
            time.sleep(interval)

    def worker_ready(self, name: str) -> bool:
        # Celery prints "<nodename> ready." once its consumer is connected to the broker.
        return any(f"{name}@" in line and " ready." in line for line in self.processes[name].tail(20000).splitlines())

    def stop(self, grace: float = 20.0) -> None:
        import psutil

        groups: dict[int, list[psutil.Process]] = {}
        for process in self.processes.values():
            if process.popen.poll() is None:
                try:
                    root = psutil.Process(process.popen.pid)
                    groups[process.popen.pid] = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
            # Even with its leader gone, a group may still hold children (a worker's pool).
            _signal_group(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        # Anything one of them started in a session of its own is still ours to end.
        for members in groups.values():
            for member in members:
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    pass

    # -- REST API ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        return json.loads(payload) if payload else None

    def token(self) -> str:
        if self._token is None:
            self._token = self.request(
                "POST", "/auth/token", {"username": ADMIN, "password": self.password}, auth=False
            )["access_token"]
        return self._token

    def api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/api/v2/monitor/health", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def dag_parsed(self, dag_id: str) -> bool:
        try:
            self.request("GET", f"/api/v2/dags/{dag_id}")
            return True
        except StackError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(found)}"
            )
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _pg_url(driver: str, database: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(LOCAL_SERVER)
    user = info.get("user") or "postgres"
    password = f":{info['password']}" if info.get("password") else ""
    return f"{driver}://{user}{password}@{info.get('host') or '127.0.0.1'}:{info.get('port') or 5432}/{database}"


@contextmanager
def _metadata_database() -> Iterator[str]:
    name = f"airflow_scaleout_{secrets.token_hex(4)}"
    with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(LOCAL_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _broker_database() -> Iterator[str]:
    """An empty Redis database of our own, so a concurrent run never shares a queue with us."""
    import redis

    owner = secrets.token_hex(8)
    for number in REDIS_DBS:
        client = redis.Redis.from_url(REDIS_URL, db=number)
        if client.set(REDIS_CLAIM_KEY, owner, nx=True, ex=1800):
            break
        client.close()
    else:
        raise StackError(f"every Redis database {REDIS_DBS.start}-{REDIS_DBS.stop - 1} at {REDIS_URL} is claimed")
    try:
        client.flushdb()  # leftovers of a run that was killed before its teardown
        client.set(REDIS_CLAIM_KEY, owner, ex=1800)
        yield f"{REDIS_URL.rstrip('/')}/{number}"
    finally:
        client.flushdb()
        client.close()


def stack_env(home: Path, metadata_db: str, broker_url: str, api_port: int, extra: dict[str, str]) -> dict[str, str]:
    # The test session's own Airflow settings (its SQLite home and so on) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != "AIRFLOW_CONFIG"}
    api_url = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            # With psycopg 3 installed (and SQLAlchemy 2) Airflow uses the psycopg dialect; the
            # async engine is derived from this URL as postgresql+asyncpg.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _pg_url("postgresql+psycopg", metadata_db),
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": _pg_url("db+postgresql+psycopg", metadata_db),
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
            # Only what the test unpauses runs: no schedule fires behind its back.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # Fast loops: this is a 2-core CI machine waiting on a handful of tasks.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # The one parse at start is all the test needs; re-parsing only costs CPU.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "CAMPAIGNS_HOME": str(ROOT),
            # The workers import worker_identity (their hostname_callable) from the repository.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    env.update(extra)
    return env


@contextmanager
def celery_stack(
    home: Path, extra_env: dict[str, str], startup_timeout: float = 150, budget: float = 450
) -> Iterator[Stack]:
    """Start the deployment; yield it once the API answers and both workers are ready.

    ``startup_timeout`` bounds migrating and starting everything; ``budget`` bounds every wait
    from now on, the test's included (teardown adds at most half a minute).
    """
    started = time.monotonic()
    with ExitStack() as cleanup:
        metadata_db = cleanup.enter_context(_metadata_database())
        broker_url = cleanup.enter_context(_broker_database())
        api_port = free_port()
        password = secrets.token_urlsafe(12)
        home.mkdir(parents=True, exist_ok=True)
        (home / "simple_auth_manager_passwords.json").write_text(json.dumps({ADMIN: password}))
        stack = Stack(
            env=stack_env(home, metadata_db, broker_url, api_port, extra_env),
            home=home,
            api_url=f"http://127.0.0.1:{api_port}",
            password=password,
            metadata_db=metadata_db,
            broker_url=broker_url,
            deadline=started + budget,
        )
        cleanup.callback(_keep_logs, stack)
        cleanup.callback(stack.stop)

        migrate = stack.start("db-migrate", "db", "migrate")
        try:
            code = migrate.popen.wait(timeout=startup_timeout)
        except subprocess.TimeoutExpired:
            code = None  # left in stack.processes, so the teardown ends it
        else:
            del stack.processes["db-migrate"]  # done: not a process that must stay alive
        if code != 0:
            raise StackError(f"airflow db migrate exited with {code}\n{migrate.tail(6000)}")

        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        for name in WORKERS:
            stack.start(
                name,
                "celery", "worker",
                "--celery-hostname", f"{name}@%h",
                "--concurrency", "2",
                "--queues", "default",
                "--skip-serve-logs",  # two on one machine would race for the log server's port
                env={
                    "CAMPAIGNS_SCALEOUT_WORKER": name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.scaleout.worker_identity.worker_name",
                },
            )
        stack.wait_for("the api-server", stack.api_healthy, started + startup_timeout - time.monotonic())
        for name in WORKERS:
            left = started + startup_timeout - time.monotonic()
            stack.wait_for(f"celery worker {name}", lambda n=name: stack.worker_ready(n), left)
        yield stack


def _keep_logs(stack: Stack) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for log in (stack.home.parent / "process-logs").glob("*.log"):
        shutil.copy(log, ARTIFACTS / log.name)
    if (stack.home / "logs").is_dir():
        shutil.copytree(stack.home / "logs", ARTIFACTS / "task-logs", dirs_exist_ok=True)
