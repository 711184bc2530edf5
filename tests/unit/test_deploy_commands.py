"""Every command the deployment files run is a real ``tilecast`` subcommand with real
flags, judged by tilecast/cli.py's own parser; every TILECAST_* variable they name is a
Settings field, and the values they set are ones Settings accepts.

Covered: the Dockerfile's ENTRYPOINT and CMD, Compose's ``command``, Kubernetes'
``command``/``args``, systemd's ``ExecStart`` (template units for each queue set).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.deployfiles import (
    DEPLOY,
    REPO,
    SETTING_RE,
    SYSTEMD,
    compose,
    container_argv,
    deploy_files,
    dockerfile_instructions,
    env_file,
    exec_form,
    exec_start_argvs,
    image_entrypoint_and_cmd,
    kubernetes_env,
    setting_names,
    settings_from,
    tilecast_argv_problem,
    tilecast_containers,
    unit_directives,
)
from tilecast.common.taskprotocol import QUEUES

# The instances the worker template unit is started as (deploy/README.md), and the one
# a single-unit host would use.
WORKER_INSTANCES = (*QUEUES, ",".join(QUEUES))


def test_the_argv_check_rejects_what_tilecast_would() -> None:
    assert tilecast_argv_problem(["tilecast", "api", "--bind", "0.0.0.0:8080"]) is None
    assert tilecast_argv_problem(["/opt/x/bin/tilecast", "worker", "--queues", "bulk"]) is None
    assert tilecast_argv_problem(["tilecast", "serve"]) is not None
    assert tilecast_argv_problem(["tilecast", "api", "--port", "8080"]) is not None
    assert tilecast_argv_problem(["tilecast", "api", "--server", "uwsgi"]) is not None
    assert tilecast_argv_problem(["tilecast", "worker", "--queue", "bulk"]) is not None
    assert tilecast_argv_problem(["tilecast", "worker", "--queues", "slow"]) is not None
    assert tilecast_argv_problem(["celery", "worker"]) is not None


# --- the image -------------------------------------------------------------------------


def test_image_is_python_311_slim_non_root_with_tilecast_entrypoint() -> None:
    instructions = dockerfile_instructions()
    assert [args for word, args in instructions if word == "FROM"] == ["python:3.11-slim"]
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    entrypoint, _ = image_entrypoint_and_cmd()
    assert entrypoint == ["tilecast"]


def test_image_installs_tilecast_with_pip_and_no_system_libvips() -> None:
    runs = " ".join(args for word, args in dockerfile_instructions() if word == "RUN")
    assert "pip install ." in runs
    # libvips comes from the pyvips-binary wheel.
    assert "apt-get" not in runs and "libvips" not in runs


def copied_sources() -> set[str]:
    sources: set[str] = set()
    for word, args in dockerfile_instructions():
        if word == "COPY":
            sources.update(args.split()[:-1])
    return sources


def test_image_copies_what_pip_install_needs() -> None:
    """The project files, every package pyproject.toml includes, and setup.py (its
    build step) when the project has one; the build context's ignore file lets them in."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = {"pyproject.toml", project["project"]["readme"], *packages}
    if (REPO / "setup.py").exists():
        needed.add("setup.py")
    assert needed <= copied_sources()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert {line[1:] for line in ignore if line.startswith("!")} == copied_sources()


def test_image_default_command_is_a_tilecast_command() -> None:
    assert tilecast_argv_problem(container_argv(None, None)) is None


def test_image_sets_only_real_settings() -> None:
    for word, args in dockerfile_instructions():
        if word == "ENV":
            env = dict(pair.split("=", 1) for pair in args.split())
            tilecast_env = {k: v for k, v in env.items() if k.startswith("TILECAST_")}
            assert set(tilecast_env) <= setting_names()
            settings_from(tilecast_env)


def test_image_entrypoint_and_cmd_use_exec_form() -> None:
    for word, args in dockerfile_instructions():
        if word in ("ENTRYPOINT", "CMD"):
            exec_form(args)


# --- Compose ---------------------------------------------------------------------------


def compose_tilecast_services() -> dict[str, dict]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").split(":")[0] == "tilecast" or "build" in service
    }


def test_compose_runs_api_and_both_worker_pools() -> None:
    argvs = {
        name: container_argv(service.get("entrypoint"), service.get("command"))
        for name, service in compose_tilecast_services().items()
    }
    assert {name: argv[1] for name, argv in argvs.items()} == {
        "api": "api",
        "worker-interactive": "worker",
        "worker-bulk": "worker",
    }
    assert argvs["worker-interactive"][argvs["worker-interactive"].index("--queues") + 1] == (
        "interactive"
    )
    assert argvs["worker-bulk"][argvs["worker-bulk"].index("--queues") + 1] == "bulk"
    for argv in argvs.values():
        assert tilecast_argv_problem(argv) is None


def test_compose_sets_only_real_settings_with_valid_values() -> None:
    for name, service in compose_tilecast_services().items():
        env = service["environment"]
        assert set(env) <= setting_names(), name
        settings_from(env)


# --- Kubernetes ------------------------------------------------------------------------


def test_kubernetes_containers_run_tilecast_commands() -> None:
    containers = tilecast_containers()
    assert {name for name, _ in containers} == {
        "tilecast-api",
        "tilecast-worker-interactive",
        "tilecast-worker-bulk",
    }
    for name, container in containers:
        argv = container_argv(container.get("command"), container.get("args"))
        assert tilecast_argv_problem(argv) is None, name


def test_kubernetes_config_holds_only_real_settings_with_valid_values() -> None:
    env = kubernetes_env()
    assert env and set(env) <= setting_names()
    settings_from(env)
    for name, container in tilecast_containers():
        names = {var["name"] for var in container.get("env", [])}
        assert {n for n in names if n.startswith("TILECAST_")} <= setting_names(), name


# --- systemd ---------------------------------------------------------------------------


def unit_files() -> list[Path]:
    return sorted(SYSTEMD.rglob("*.service")) + sorted(SYSTEMD.rglob("*.conf"))


def test_systemd_units_run_tilecast_commands() -> None:
    argvs = [argv for path in unit_files() for argv in exec_start_argvs(path, WORKER_INSTANCES)]
    assert {argv[1] for argv in argvs} == {"api", "worker"}
    for argv in argvs:
        assert tilecast_argv_problem(argv) is None


def test_systemd_drop_ins_name_a_worker_instance() -> None:
    for drop_in in SYSTEMD.glob("tilecast-worker@*.service.d"):
        instance = drop_in.name.removeprefix("tilecast-worker@").removesuffix(".service.d")
        assert instance in WORKER_INSTANCES


def test_systemd_units_read_the_shipped_environment_file() -> None:
    env = env_file(SYSTEMD / "tilecast.env")
    assert set(env) <= setting_names()
    settings_from(env)
    for path in sorted(SYSTEMD.glob("*.service")):
        files = [v for k, v in unit_directives(path) if k == "EnvironmentFile"]
        assert [Path(f).name for f in files] == ["tilecast.env"], path.name


# --- every file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [*deploy_files(), DEPLOY / "README.md"],
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_tilecast_variable_named_is_a_setting(path: Path) -> None:
    """Comments and prose included: a commented-out option must work when uncommented."""
    named = set(SETTING_RE.findall(path.read_text(encoding="utf-8")))
    assert named <= setting_names()
