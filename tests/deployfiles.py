"""Reading the deployment files under deploy/ for their tests (tests/unit/test_deploy_*.py).

Each reader returns plain data: YAML documents, Dockerfile instructions, systemd
directives; :func:`tilecast_argv_problem` judges a command line with tilecast's own
argparse parser, so a flag renamed in tilecast/cli.py fails these tests at once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from tilecast.common.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
# Written and tested by its own engineer (tests/unit/test_girder_plugin.py).
NOT_OURS = DEPLOY / "girder-plugin"

SETTING_RE = re.compile(r"\bTILECAST_[A-Z0-9_]+")


def deploy_files(*suffixes: str) -> list[Path]:
    """Files under deploy/ (the Girder plugin aside), optionally by suffix."""
    return sorted(
        path
        for path in DEPLOY.rglob("*")
        if path.is_file()
        and NOT_OURS not in path.parents
        and (not suffixes or path.suffix in suffixes)
    )


def yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def compose() -> dict[str, Any]:
    (doc,) = yaml_documents(COMPOSE)
    return doc


# Compose's variable syntax: $$ (a dollar), $NAME, ${NAME}, ${NAME:-default},
# ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+other}, ${NAME+other}.
COMPOSE_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\})"
)


def compose_interpolated(env: dict[str, str], document: Any = None) -> Any:
    """docker-compose.yml (or ``document``) as ``docker compose config`` reads it with
    ``env`` set: every variable replaced (defaults applied). A ``$`` that is no variable
    raises, as Compose refuses the file."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        value, op, word = env.get(name), match["op"] or "", match["word"] or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return word if unset else str(value)
        if op.endswith("?"):
            if unset:
                raise ValueError(f"{name} is required: {word}")
            return str(value)
        if op.endswith("+"):
            return "" if unset else word
        return value or ""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            stray = COMPOSE_VARIABLE.sub("", value)
            if "$" in stray:
                raise ValueError(f"not a Compose variable: {value!r}")
            return COMPOSE_VARIABLE.sub(replace, value)
        return value

    return walk(compose() if document is None else document)


def kustomization() -> dict[str, Any]:
    (doc,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    return doc


def kubernetes_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every resource of the kustomization, in its order, with the file it came from."""
    out = []
    for name in kustomization()["resources"]:
        path = KUBERNETES / name
        out.extend((path, doc) for doc in yaml_documents(path))
    return out


# The kustomization fields :func:`kustomize_build` applies; any other is refused.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}


def kustomize_build() -> list[dict[str, Any]]:
    """What ``kubectl kustomize deploy/kubernetes`` outputs, for the fields this
    kustomization uses: the namespace set on every namespaced resource, ``labels`` (without
    ``includeSelectors``) added to each resource's metadata, ``images`` retagged in every
    container. A field beyond those raises, so that a new one is built (and checked) here
    before the file relies on it."""
    spec = kustomization()
    unknown = set(spec) - KUSTOMIZE_FIELDS
    if unknown:
        raise ValueError(f"kustomization fields this build does not apply: {sorted(unknown)}")
    built = []
    for _, original in kubernetes_resources():
        resource = json.loads(json.dumps(original))  # a deep copy
        metadata = resource["metadata"]
        if resource["kind"] != "Namespace":
            metadata["namespace"] = spec["namespace"]
        for entry in spec.get("labels", []):
            if set(entry) - {"pairs"}:
                raise ValueError(f"label options this build does not apply: {entry}")
            metadata["labels"] = {**metadata.get("labels", {}), **entry["pairs"]}
        for pod in pod_specs(resource):
            for container in pod["containers"] + pod.get("initContainers", []):
                container["image"] = _retagged(container["image"], spec.get("images", []))
        built.append(resource)
    return built


def _retagged(image: str, rules: list[dict[str, str]]) -> str:
    name, _, tag = image.partition(":")
    for rule in rules:
        if set(rule) - {"name", "newName", "newTag"}:
            raise ValueError(f"image options this build does not apply: {rule}")
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return image


def pod_specs(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if resource["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield resource["spec"]["template"]["spec"]


def tilecast_containers() -> list[tuple[str, dict[str, Any]]]:
    """``(workload name, container)`` of every container of the tilecast image."""
    return [
        (resource["metadata"]["name"], container)
        for _, resource in kubernetes_resources()
        for spec in pod_specs(resource)
        for container in spec["containers"]
        if container["image"].split(":")[0] == "tilecast"
    ]


def kubernetes_env() -> dict[str, str]:
    """The variables the ConfigMaps and Secrets (``stringData``) hold."""
    env: dict[str, str] = {}
    for _, resource in kubernetes_resources():
        if resource["kind"] == "ConfigMap":
            env.update(resource.get("data", {}))
        elif resource["kind"] == "Secret":
            env.update(resource.get("stringData", {}))
    return env


# --- the Dockerfile -------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """An ENTRYPOINT/CMD in exec (JSON) form; the shell form would hide the real argv."""
    value = json.loads(arguments)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not an exec-form list of strings: {arguments}")
    return value


def image_entrypoint_and_cmd() -> tuple[list[str], list[str]]:
    found = dict(dockerfile_instructions())
    return exec_form(found["ENTRYPOINT"]), exec_form(found["CMD"])


def container_argv(command: Sequence[str] | None, args: Sequence[str] | None) -> list[str]:
    """What a container of the tilecast image runs: ``command`` replaces the image's
    ENTRYPOINT and ``args`` its CMD (Compose's ``entrypoint``/``command`` alike)."""
    entrypoint, cmd = image_entrypoint_and_cmd()
    if command is not None:
        return [*command, *(args or [])]
    return [*entrypoint, *(cmd if args is None else args)]


# --- systemd --------------------------------------------------------------------------


def unit_directives(path: Path) -> list[tuple[str, str]]:
    """``(Key, value)`` pairs of a unit or drop-in file, sections ignored."""
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.append((key.strip(), value.strip()))
    return out


def env_file(path: Path) -> dict[str, str]:
    """A systemd EnvironmentFile (KEY=value lines)."""
    return dict(unit_directives(path))


def exec_start_argvs(path: Path, instances: Sequence[str]) -> list[list[str]]:
    """The ExecStart command lines of a unit, with ``%i`` replaced by each instance name
    for a template unit."""
    commands = [value for key, value in unit_directives(path) if key == "ExecStart"]
    out = []
    for command in commands:
        expanded = [command.replace("%i", i) for i in instances] if "%i" in command else [command]
        out.extend(shlex.split(c.lstrip("-@+!:")) for c in expanded)
    return out


# --- judging commands and settings ---------------------------------------------------


def tilecast_argv_problem(argv: Sequence[str]) -> str | None:
    """Why ``argv`` is not a valid ``tilecast`` invocation, or None when it is.

    The program must be the ``tilecast`` console script; the rest must pass
    tilecast/cli.py's own parser, and a worker's ``--queues`` tilecast's own check."""
    from tilecast.cli import build_parser
    from tilecast.worker import parse_queues

    if not argv or Path(argv[0]).name != "tilecast":
        return f"{list(argv)}: the program is not tilecast"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = strict(build_parser()).parse_args(list(argv[1:]))
            if args.command == "worker":
                parse_queues(args.queues)
    except SystemExit as exc:
        return f"{list(argv)}: {stderr.getvalue().strip() or exc}"
    return None


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its subcommands' parsers refusing abbreviated flags: argparse takes
    ``--queue`` for ``--queues``, which breaks once a flag sharing the prefix is added."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                strict(subparser)
    return parser


def setting_names() -> set[str]:
    """The environment variable of every Settings field."""
    return {PREFIX + f.name.upper() for f in fields(Settings)}


def settings_from(env: dict[str, Any]) -> Settings:
    """Settings as tilecast would read them from ``env`` (YAML may hold non-strings)."""
    return Settings.from_env({key: str(value) for key, value in env.items()})
