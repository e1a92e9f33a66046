"""Static checks of docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed and cross-checked against each other and
against the repository, so a broken mount, a misspelt service name or an unparsable
connection fails here rather than at `docker compose up`.
"""

from __future__ import annotations

import json
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GITIGNORE = ROOT / ".gitignore"
COMPOSE_DOC = ROOT / "docs" / "docker-compose.md"
README = ROOT / "README.md"

REQUIRED_SERVICES = {
    "postgres",
    "redis",
    "campaign-store",
    "mailpit",
    "moto",
    "statsd-exporter",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
}
# Folders bind-mounted into the containers that do not exist in a fresh clone: Airflow
# creates them on first start (task logs, generated airflow.cfg).
RUNTIME_DIRS = {"logs", "config"}
EXPECTED_BASE_IMAGE = "apache/airflow:3.3.2-python3.11"


# --------------------------------------------------------------------------- helpers


def interpolate(value: str) -> str:
    """Resolve Compose variable syntax as if no variable were set (defaults only).

    Handles ``$$`` (a literal dollar), ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}`` and ``${VAR:?err}``/``${VAR?err}`` (which resolve to empty here), with
    nested ``${...}`` inside defaults. Ignoring the caller's environment keeps the test
    deterministic.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < len(value) and depth:
                if value.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if value[j] == "}":
                    depth -= 1
                j += 1
            assert depth == 0, f"unclosed ${{ in {value!r}"
            body = value[i + 2 : j - 1]
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])(.*))?\Z", body, re.S)
            assert m, f"invalid variable expression ${{{body}}} in {value!r}"
            op, rest = m.group(2), m.group(3)
            out.append(interpolate(rest) if op == "-" else "")
            i = j
        else:
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", value[i + 1 :])
            assert m, f"stray $ in {value!r} (write $$ for a literal dollar)"
            i += 1 + m.end()
    return "".join(out)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate(str(v)) if v is not None else "" for k, v in env.items()}


def depends_on_of(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def command_text(service: dict) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount; named volumes are left out."""
    mounts = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                mounts.append((interpolate(vol["source"]), vol["target"]))
            continue
        source, _, target = interpolate(vol).partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, target.split(":")[0]))
    return mounts


def named_volumes(service: dict) -> list[str]:
    names = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            if vol.get("type") == "volume" and vol.get("source"):
                names.append(vol["source"])
            continue
        source, sep, _ = interpolate(vol).partition(":")
        if sep and not source.startswith((".", "/", "~")):
            names.append(source)
    return names


def published_ports(service: dict) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) of every published port."""
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                result.append(
                    (port.get("host_ip", "0.0.0.0"), int(port["published"]), port.get("protocol", "tcp"))
                )
            continue
        spec = interpolate(str(port))
        spec, _, proto = spec.partition("/")
        parts = spec.split(":")
        if len(parts) == 1:  # container port only: Docker picks a free host port
            continue
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        host = parts[-2]
        start, _, end = host.partition("-")
        for number in range(int(start), int(end or start) + 1):
            result.append((host_ip, number, proto or "tcp"))
    return result


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    result = []
    for line in logical:
        instr, _, args = line.partition(" ")
        result.append((instr.upper(), args.strip()))
    return result


def resolve_dockerfile_vars(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
        lambda m: args.get(m.group(1), m.group(0)),
        text,
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), f"missing {COMPOSE_FILE}"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_services(services) -> dict[str, dict]:
    """Services built from the x-airflow-common anchor (they carry its environment)."""
    found = {name: svc for name, svc in services.items() if "AIRFLOW__CORE__EXECUTOR" in env_of(svc)}
    assert found, "no service carries the x-airflow-common environment"
    return found


@pytest.fixture(scope="module")
def workers(services) -> dict[str, dict]:
    return {name: svc for name, svc in services.items() if command_text(svc).strip() == "celery worker"}


# --------------------------------------------------------------------------- compose tests


def test_required_services_exist(services):
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_airflow_common_anchor_is_used_by_every_airflow_service(compose, airflow_services):
    common = compose.get("x-airflow-common")
    assert isinstance(common, dict), "the x-airflow-common extension is gone"
    expected = {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker-1",
        "airflow-worker-2",
    }
    assert expected <= airflow_services.keys()
    raw = COMPOSE_FILE.read_text()
    for name in expected:
        block = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\s*\n)+)", raw, re.M)
        assert block and re.search(r"<<: \*airflow-(common|worker)\b", block.group(1)), (
            f"{name} does not merge the x-airflow-common anchor"
        )


def test_airflow_services_share_one_image(compose, airflow_services):
    common = compose["x-airflow-common"]
    image = interpolate(common["image"])
    assert image, "x-airflow-common has no image name"
    for name, svc in airflow_services.items():
        assert interpolate(svc.get("image", "")) == image, f"{name} uses a different image"
        assert svc.get("build") == common.get("build"), f"{name} builds differently"


def test_command_of_each_airflow_component(services):
    assert command_text(services["airflow-apiserver"]) == "api-server"
    assert command_text(services["airflow-scheduler"]) == "scheduler"
    assert command_text(services["airflow-dag-processor"]) == "dag-processor"
    assert command_text(services["airflow-triggerer"]) == "triggerer"
    assert "8080:8080" in [interpolate(str(p)) for p in services["airflow-apiserver"]["ports"]]


def test_bind_mounts_exist_or_are_known_runtime_dirs(services):
    gitignore = GITIGNORE.read_text().splitlines() if GITIGNORE.exists() else []
    ignored = {line.strip().strip("/") for line in gitignore if line.strip() and not line.startswith("#")}
    # The compose guide may live in docs/ or be merged into the README.
    doc = "".join(p.read_text() for p in (COMPOSE_DOC, README) if p.exists())
    seen = set()
    for name, svc in services.items():
        for host, container in bind_mounts(svc):
            assert container.startswith("/"), f"{name}: container path {container!r} is not absolute"
            assert not host.startswith(("/", "~")), f"{name}: {host!r} ties the stack to one machine"
            path = (ROOT / host).resolve()
            assert ROOT in path.parents or path == ROOT, f"{name}: {host!r} points outside the repo"
            rel = path.relative_to(ROOT).as_posix()
            seen.add(rel)
            if path.exists():
                continue
            assert rel in RUNTIME_DIRS, f"{name}: bind-mounted {host!r} does not exist in the repo"
            assert rel in ignored or f"./{rel}" in doc or f"`{rel}/`" in doc, (
                f"runtime folder {rel}/ is neither in .gitignore nor documented in the compose guide"
            )
    assert {"dags", "plugins", "include"} <= seen, "project folders are not all mounted"


def test_named_volumes_are_declared(compose, services):
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in services.items():
        for vol in named_volumes(svc):
            assert vol in declared, f"{name}: volume {vol!r} is not declared under top-level volumes"


def test_referenced_files_exist(services, compose):
    for name, svc in {**services, "x-airflow-common": compose["x-airflow-common"]}.items():
        build = svc.get("build")
        if build:
            context = ROOT / interpolate(build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: {dockerfile} missing"
        env_files = svc.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            if isinstance(entry, dict):
                if entry.get("required", True) is False:
                    continue
                entry = entry["path"]
            assert (ROOT / interpolate(entry)).is_file(), f"{name}: env_file {entry} missing"
    assert (ROOT / "requirements.txt").is_file()


def test_depends_on_targets_are_services_without_cycles(services):
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        for target, spec in depends_on_of(svc).items():
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target != name
            condition = (spec or {}).get("condition", "service_started")
            assert condition in valid, f"{name} -> {target}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy, but it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") in (None, "no"), f"{target} never completes"

    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", f"depends_on cycle: {' -> '.join(path + [node])}"
        state[node] = "active"
        for target in depends_on_of(services[node]):
            visit(target, path + [node])
        state[node] = "done"

    for name in services:
        visit(name, [])


def test_long_running_services_have_healthchecks(services):
    for name, svc in services.items():
        if name == "airflow-init" or "debug" in (svc.get("profiles") or []):
            continue
        assert "healthcheck" in svc, f"{name} has no healthcheck"


def test_executor_is_celery_with_reachable_broker(services, airflow_services):
    for name, svc in airflow_services.items():
        env = env_of(svc)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
            host = urlsplit(env[key]).hostname
            assert host in services, f"{name}: {key} points at {host!r}, not a compose service"


def test_airflow3_settings(services, airflow_services):
    for name, svc in airflow_services.items():
        env = env_of(svc)
        api_url = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert api_url.hostname == "airflow-apiserver" and api_url.port == 8080, name
        assert api_url.path == "/execution/", name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"], f"{name}: components must share one JWT secret"
        assert env["AIRFLOW__METRICS__STATSD_ON"].lower() == "true", name
        assert env["AIRFLOW__METRICS__STATSD_HOST"] in services, name
        assert int(env["AIRFLOW__METRICS__STATSD_PORT"]) == 9125, name
    secrets = {env_of(svc)["AIRFLOW__API_AUTH__JWT_SECRET"] for svc in airflow_services.values()}
    assert len(secrets) == 1, "Airflow components disagree on the JWT secret"


def test_two_celery_workers_with_distinct_hostnames(services, workers):
    assert len(workers) >= 2, f"expected two Celery workers, found {sorted(workers)}"
    hostnames = [svc.get("hostname") for svc in workers.values()]
    assert all(hostnames), "every worker needs an explicit hostname (its Celery node name)"
    assert len(set(hostnames)) == len(hostnames), f"worker hostnames collide: {hostnames}"
    for name, svc in workers.items():
        assert svc["hostname"] == name, f"{name}: hostname should equal the service name (resolvable)"
        assert env_of(svc).get("DUMB_INIT_SETSID") == "0", f"{name}: needs warm shutdown"
        deps = depends_on_of(svc)
        assert deps.get("airflow-init", {}).get("condition") == "service_completed_successfully"


def test_init_migrates_airflow_and_campaign_store(services):
    init = services["airflow-init"]
    env = env_of(init)
    assert env.get("_AIRFLOW_DB_MIGRATE") == "true"
    assert env.get("_AIRFLOW_WWW_USER_CREATE") == "true"
    assert env.get("_AIRFLOW_WWW_USER_USERNAME") and env.get("_AIRFLOW_WWW_USER_PASSWORD")
    script = command_text(init)
    assert "campaigns store migrate" in script
    assert script.index("/entrypoint airflow version") < script.index("campaigns store migrate"), (
        "the campaign store must be migrated after the Airflow metadata DB"
    )
    assert depends_on_of(init).get("campaign-store", {}).get("condition") == "service_healthy"


def _conn_values(services) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for svc in services.values():
        for key, value in env_of(svc).items():
            if key.startswith("AIRFLOW_CONN_"):
                values.setdefault(key, set()).add(value)
    return values


def _hosts_in_connection(value: str) -> tuple[str, str | None, dict]:
    """(conn_type, host, extras) of an Airflow connection given as a URI or as JSON."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return data["conn_type"], data.get("host"), extra
    parts = urlsplit(value)
    assert parts.scheme, f"connection URI without a scheme: {value!r}"
    return parts.scheme, parts.hostname, dict(parse_qsl(parts.query))


def test_connection_env_values_parse_and_point_at_services(services):
    values = _conn_values(services)
    for key in ("AIRFLOW_CONN_CAMPAIGN_STORE", "AIRFLOW_CONN_SMTP_DEFAULT", "AIRFLOW_CONN_AWS_DEFAULT"):
        assert key in values, f"{key} is not set on any service"
    for key, variants in values.items():
        assert len(variants) == 1, f"{key} differs between services: {variants}"
        (value,) = variants
        if key == "AIRFLOW_CONN_CAMPAIGN_UNSUBSCRIBE":
            # Its host is the public address in recipients' links, not a service name: the
            # api-server as published on the developer's machine.
            public = urlsplit(value)
            assert (public.hostname, public.port) == ("localhost", 8080), value
            continue
        conn_type, host, extra = _hosts_in_connection(value)
        hosts = [host] if host else []
        for field in extra.values():
            if isinstance(field, str) and "://" in field:
                hosts.append(urlsplit(field).hostname)
        assert hosts, f"{key} names no host"
        for h in hosts:
            assert h in services, f"{key} points at {h!r}, which is not a compose service"

    conn_type, host, _ = _hosts_in_connection(next(iter(values["AIRFLOW_CONN_CAMPAIGN_STORE"])))
    assert conn_type in ("postgres", "postgresql") and host == "campaign-store"

    conn_type, host, extra = _hosts_in_connection(next(iter(values["AIRFLOW_CONN_SMTP_DEFAULT"])))
    assert conn_type == "smtp" and host == "mailpit"
    # Mailpit has no TLS: both must be truthy (the provider treats any non-empty string as true).
    assert extra.get("disable_ssl") and extra.get("disable_tls")
    assert str(extra["disable_ssl"]).lower() not in ("false", "0", "")

    conn_type, _, extra = _hosts_in_connection(next(iter(values["AIRFLOW_CONN_AWS_DEFAULT"])))
    assert conn_type == "aws"
    assert urlsplit(extra["endpoint_url"]).hostname == "moto"
    assert urlsplit(extra["endpoint_url"]).port == 5000


def test_connection_env_values_are_understood_by_airflow(services):
    connection = pytest.importorskip("airflow.sdk.definitions.connection")
    for key, variants in _conn_values(services).items():
        (value,) = variants
        conn_id = key.removeprefix("AIRFLOW_CONN_").lower()
        if value.lstrip().startswith("{"):
            conn = connection.Connection.from_json(value, conn_id=conn_id)
        else:
            conn = connection.Connection.from_uri(value, conn_id=conn_id)
        assert conn.conn_type, key
        if conn_id == "campaign_store":
            assert (conn.conn_type, conn.host, conn.port, conn.schema) == ("postgres", "campaign-store", 5432, "campaigns")
        if conn_id == "smtp_default":
            # The smtp provider's own reading of the extras (SmtpHook.use_ssl / smtp_starttls).
            assert not (not bool(conn.extra_dejson.get("disable_ssl", False)))
            assert not (not bool(conn.extra_dejson.get("disable_tls", False)))
            assert conn.port == 1025
        if conn_id == "aws_default":
            assert conn.extra_dejson["endpoint_url"] == "http://moto:5000"


def test_published_ports_do_not_collide(services):
    owners: dict[tuple[str, int, str], str] = {}
    for name, svc in services.items():
        for key in published_ports(svc):
            assert key not in owners, f"{name} and {owners[key]} both publish {key[1]}/{key[2]}"
            owners[key] = name
    published = {port for _, port, _ in owners}
    assert {8080, 8025, 5000} <= published, "Airflow UI, Mailpit UI or moto is not published"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_on_official_image_and_installs_requirements():
    instructions = dockerfile_instructions()
    args: dict[str, str] = {}
    base = None
    for instr, rest in instructions:
        if instr == "ARG" and "=" in rest:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip().strip('"')
        if instr == "FROM":
            base = resolve_dockerfile_vars(rest.split()[0], args)
            break
    assert base == EXPECTED_BASE_IMAGE

    pinned = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt does not pin apache-airflow"
    assert base.split(":")[1].startswith(pinned.group(1) + "-"), (
        f"base image {base} and requirements.txt (apache-airflow=={pinned.group(1)}) disagree"
    )

    copied: dict[str, str] = {}  # container path -> context path
    installed_requirements = installed_project = False
    for instr, rest in instructions:
        if instr == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            *sources, dest = parts
            for src in sources:
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"
                target = dest + Path(src).name if dest.endswith("/") and not src.endswith("/") else dest
                copied[target.rstrip("/")] = src.rstrip("/")
        if instr == "RUN" and "pip install" in rest:
            tokens = shlex.split(rest)
            for i, tok in enumerate(tokens):
                if tok in ("-r", "--requirement") and copied.get(tokens[i + 1]) == "requirements.txt":
                    installed_requirements = True
                if tok in ("-e", "--editable") and copied.get(tokens[i + 1] + "/pyproject.toml") == "pyproject.toml":
                    installed_project = True
    assert installed_requirements, "the Dockerfile does not pip install the copied requirements.txt"
    assert installed_project, "the Dockerfile does not install the project (the `campaigns` CLI)"


def test_dockerignore_keeps_local_state_out_but_not_build_inputs():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for required in (".venv", ".airflow*", ".campaign-store", ".mailbox", "test-artifacts"):
        assert required in patterns, f".dockerignore does not exclude {required}"
    assert any("__pycache__" in p for p in patterns)
    for needed in ("requirements.txt", "pyproject.toml", "plugins", "dags", "include", "Dockerfile"):
        assert not any(fnmatch(needed, p) for p in patterns if not p.startswith("!")), (
            f".dockerignore would hide {needed}, which the image build needs"
        )
