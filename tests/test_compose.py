"""docker-compose.yml and the Dockerfile agree with the code they deploy.

No Docker engine is needed (nor called): the files are parsed and checked
against ``worker.settings.setting_names()`` and ``workflows.search.CLI_TYPES``,
so a worker variable the settings don't read, a search attribute added in code
but not registered on the namespace, or a worker pinned to a host port fails here.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from fnmatch import fnmatchcase as fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from workflows.search import CLI_TYPES
from worker.settings import Settings, setting_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INITDB_DIR = "/docker-entrypoint-initdb.d"

POSTGRES, TEMPORAL, SETUP, UI, WORKER = (
    "postgresql",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "worker",
)
REQUIRED_WORKER_VARIABLES = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TASK_QUEUE",
    "DATABASE_URL",
    "LOG_FORMAT",
}
TEMPORAL_DATABASES = {"temporal", "temporal_visibility"}


# --- helpers -------------------------------------------------------------------------


def interpolate(value: object) -> str:
    """Compose's variable interpolation with every variable unset: defaults win, $$ is $."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return match.group("default") or ""

    return re.sub(
        r"\$\$|\$\{(?P<name>\w+)(?::?[-?](?P<default>[^}]*))?\}", substitute, str(value)
    )


def environment(service: dict) -> dict[str, str]:
    """A service's environment (mapping or list form), interpolated."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        env = dict(pairs)
    return {str(k): interpolate("" if v is None else v) for k, v in env.items()}


def command_text(service: dict) -> str:
    parts = [service.get("entrypoint") or [], service.get("command") or []]
    return "\n".join(
        " ".join(part) if isinstance(part, list) else str(part) for part in parts
    )


def registered_search_attributes(service: dict) -> dict[str, str]:
    """`--name X --type T` pairs of the setup command (each name once)."""
    pairs = re.findall(
        r"--name[ =]+[\"']?([A-Za-z_]\w*)[\"']?\s+--type[ =]+[\"']?([A-Za-z]+)[\"']?",
        interpolate(command_text(service)),
    )
    names = [name for name, _ in pairs]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"search attributes registered twice: {sorted(duplicates)}"
    return dict(pairs)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def depends_on(service: dict) -> dict[str, str]:
    """depends_on as {service: condition} (list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def seconds(duration: str | int) -> float:
    """A compose duration ('1m30s', '30s', 45) in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def unknown_worker_variables(compose: dict) -> set[str]:
    return set(environment(compose["services"][WORKER])) - set(setting_names())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def published_host_ports(service: dict) -> list[str]:
    """Port mappings that bind a host port (short `H:C` syntax or long `published:`)."""
    bound = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") not in (None, ""):
                bound.append(str(port))
        elif ":" in str(port):
            bound.append(str(port))
        else:
            bound.append(f"{port} (random host port; use `expose` instead)")
    return bound


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


# --- the whole file -------------------------------------------------------------------


def test_expected_services(services):
    assert {POSTGRES, TEMPORAL, SETUP, UI, WORKER} <= set(services)


def test_every_service_has_an_image_or_a_build(services):
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_images_are_pinned(services):
    for name, service in services.items():
        if "image" in service:
            image = service["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag, f"{name}: {image} has no tag"
            assert tag != "latest", f"{name}: pin {image} to a version"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


# --- postgresql -----------------------------------------------------------------------


def test_postgresql_keeps_data_and_reports_health(compose, services):
    postgres = services[POSTGRES]
    assert postgres["image"].startswith("postgres:")
    data_mounts = [v for v in postgres.get("volumes", []) if ":/var/lib/postgresql/data" in v]
    assert data_mounts, "postgresql data is not on a volume"
    assert data_mounts[0].split(":")[0] in (compose.get("volumes") or {}), "not a named volume"
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))


def init_scripts(services) -> list[Path]:
    scripts = []
    for volume in services[POSTGRES].get("volumes", []):
        source, target = volume.split(":")[:2]
        if target.startswith(INITDB_DIR):
            scripts.append((ROOT / source).resolve())
    return scripts


def test_init_scripts_exist(services):
    scripts = init_scripts(services)
    assert scripts, f"nothing is mounted into {INITDB_DIR}"
    for script in scripts:
        assert script.is_file(), f"{script} is mounted but missing"
        assert ROOT in script.parents, f"{script} is outside the project"


# --- temporal -------------------------------------------------------------------------


def test_temporal_persists_to_the_postgresql_service(services):
    temporal = services[TEMPORAL]
    env = environment(temporal)
    assert temporal["image"].startswith("temporalio/auto-setup:")
    assert env["DB"].startswith("postgres"), env["DB"]
    assert env["POSTGRES_SEEDS"] == POSTGRES
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] == environment(services[POSTGRES])["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == environment(services[POSTGRES])["POSTGRES_PASSWORD"]
    # SQL visibility, not Elasticsearch: no ES settings.
    assert env.get("ENABLE_ES", "false") == "false"
    assert depends_on(temporal)[POSTGRES] == "service_healthy"


def test_ui_talks_to_the_temporal_service(services):
    ui = services[UI]
    assert ui["image"].startswith("temporalio/ui:")
    assert host_port(environment(ui)["TEMPORAL_ADDRESS"]) == (TEMPORAL, 7233)
    assert TEMPORAL in depends_on(ui)
    assert any(str(p).endswith(":8080") for p in ui.get("ports", [])), "UI port 8080 not published"


# --- search attributes ----------------------------------------------------------------


def test_setup_registers_exactly_the_search_attributes_of_the_code(services):
    setup = services[SETUP]
    assert setup["image"].startswith("temporalio/admin-tools:")
    assert "temporal operator search-attribute create" in command_text(setup)
    assert registered_search_attributes(setup) == CLI_TYPES


def test_setup_targets_the_workers_server_and_namespace(services):
    setup_env, worker_env = environment(services[SETUP]), environment(services[WORKER])
    assert host_port(setup_env["TEMPORAL_ADDRESS"]) == (TEMPORAL, 7233)
    assert setup_env["TEMPORAL_NAMESPACE"] == worker_env["TEMPORAL_NAMESPACE"]
    assert environment(services[TEMPORAL]).get("DEFAULT_NAMESPACE", "default") == (
        worker_env["TEMPORAL_NAMESPACE"]
    ), "auto-setup must create the namespace the worker polls"
    text = command_text(services[SETUP])
    # The script passes these to every CLI call ($$ is compose's literal $).
    assert '--address "$$TEMPORAL_ADDRESS"' in text
    assert '--namespace "$$TEMPORAL_NAMESPACE"' in text
    assert TEMPORAL in depends_on(services[SETUP])


def test_search_attribute_parser_sees_every_pair():
    service = {
        "command": "x --name A --type Keyword\nx --name=B --type=Int\n"
        "x --name 'C' --type \"Datetime\""
    }
    assert registered_search_attributes(service) == {"A": "Keyword", "B": "Int", "C": "Datetime"}
    with pytest.raises(AssertionError):
        registered_search_attributes({"command": "--name A --type Int --name A --type Int"})


# --- worker ---------------------------------------------------------------------------


def test_worker_is_built_from_this_project(services):
    build = services[WORKER]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


def test_worker_is_scalable(services):
    worker = services[WORKER]
    assert "container_name" not in worker, "a fixed container_name breaks --scale"
    assert not published_host_ports(worker), "a host port breaks --scale; use expose"
    assert "hostname" not in worker


def test_worker_sets_only_variables_the_settings_read(compose):
    assert not unknown_worker_variables(compose), (
        f"worker sets {sorted(unknown_worker_variables(compose))}, "
        f"which worker/settings.py does not read ({setting_names()})"
    )


def test_unknown_worker_variable_is_caught(compose):
    """The check above can fail: a variable the settings don't know is reported."""
    broken = copy.deepcopy(compose)
    env = broken["services"][WORKER]["environment"]
    if isinstance(env, list):
        env.append("WORKER_CONCURRENCY=8")
    else:
        env["WORKER_CONCURRENCY"] = "8"
    new = unknown_worker_variables(broken) - unknown_worker_variables(compose)
    assert new == {"WORKER_CONCURRENCY"}


def test_worker_sets_the_required_variables(services):
    env = environment(services[WORKER])
    missing = REQUIRED_WORKER_VARIABLES - set(env)
    assert not missing, f"worker does not set {sorted(missing)}"
    assert env["LOG_FORMAT"] == "json"


def test_worker_environment_is_valid_settings(services):
    settings = Settings.from_env(environment(services[WORKER]))
    assert host_port(settings.temporal_address) == (TEMPORAL, 7233)
    assert settings.metrics_port > 0


def test_worker_database_is_the_app_database_on_postgresql(services):
    url = urlsplit(environment(services[WORKER])["DATABASE_URL"])
    assert url.scheme in {"postgresql", "postgres"}
    assert (url.hostname, url.port or 5432) == (POSTGRES, 5432)
    database = url.path.lstrip("/")
    assert database and database not in TEMPORAL_DATABASES, (
        "the worker must use its own database, not Temporal's"
    )
    init_sql = "\n".join(script.read_text() for script in init_scripts(services))
    assert re.search(rf"CREATE\s+DATABASE\s+\"?{re.escape(database)}\"?\s", init_sql, re.I), (
        f"no init script creates database {database!r}"
    )
    if url.username:
        assert re.search(rf"CREATE\s+(ROLE|USER)\s+\"?{re.escape(url.username)}\"?\s", init_sql, re.I)


def test_worker_password_matches_the_init_script(services):
    """The URL's password and the role's password come from the same variable."""
    raw_url = services[WORKER]["environment"]["DATABASE_URL"]
    raw_postgres_env = services[POSTGRES]["environment"]
    password = urlsplit(interpolate(raw_url)).password
    variables = re.findall(r"\$\{(\w+)", raw_url)
    assert variables, "DATABASE_URL's password should come from a variable"
    assert raw_postgres_env[variables[0]] == f"${{{variables[0]}:-{password}}}"


def test_worker_starts_after_its_dependencies(services):
    deps = depends_on(services[WORKER])
    assert deps.get(SETUP) == "service_completed_successfully"
    assert deps.get(POSTGRES) == "service_healthy"


def test_worker_restarts_and_shuts_down_gracefully(services):
    worker = services[WORKER]
    assert worker.get("restart") == "unless-stopped"
    assert seconds(worker.get("stop_grace_period", "10s")) >= 30


def test_worker_metrics_port_is_exposed(services):
    port = environment(services[WORKER]).get("METRICS_PORT", str(Settings().metrics_port))
    assert port in {str(p) for p in services[WORKER].get("expose", [])}
    assert port in dockerfile_exposed_ports()


# --- Dockerfile -----------------------------------------------------------------------


def dockerfile_exposed_ports() -> set[str]:
    return {
        port.split("/")[0]
        for keyword, args in dockerfile_instructions()
        if keyword == "EXPOSE"
        for port in args.split()
    }


def test_dockerfile_runs_the_worker():
    assert DOCKERFILE.is_file()
    cmds = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    assert cmds, "no CMD"
    assert json.loads(cmds[-1]) == ["goldenroute", "worker"]  # exec form: gets SIGTERM
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "goldenroute" in scripts


def test_dockerfile_installs_every_package_and_runs_unprivileged():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.12-slim")
    assert any(
        k == "RUN" and re.search(r"pip install --no-cache-dir \.(\s|$)", a) for k, a in instructions
    )
    copied = {
        shlex.split(args)[0].rstrip("/") for keyword, args in instructions if keyword == "COPY"
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # Top-level directories of the packages found as setuptools finds them (regular packages
    # whose dotted name matches an include pattern): a subpackage ships with its parent.
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    assert find.get("namespaces") is False and "exclude" not in find
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ROOT.iterdir() if top.is_dir() and not top.name.startswith(".")
             for init in top.rglob("__init__.py")}
    packages = {name.split(".")[0] for name in found if any(fnmatch(name, p) for p in find["include"])}
    assert {"workflows", "activities", "worker", "starter"} <= packages, packages
    assert {"pyproject.toml", *packages} <= copied, f"not copied: {packages - copied}"
    if "readme" in pyproject["project"]:
        assert pyproject["project"]["readme"] in copied
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "runs as root"


def test_dockerfile_environment_uses_settings_names():
    names = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            names |= {item.split("=", 1)[0] for item in shlex.split(args)}
    own = {n for n in names if not n.startswith(("PYTHON", "PIP_"))}
    assert own <= set(setting_names()), f"unknown settings in Dockerfile: {own - set(setting_names())}"


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", ".goldenroute"} <= ignored
