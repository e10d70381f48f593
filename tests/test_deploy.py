"""``deploy/`` as far as this machine allows: no Docker daemon, no Kubernetes, no systemd as PID 1.

What can be checked is checked against the engine itself, not against a copy of its facts: every
variable the files set is read from :data:`goraxfast.config.SETTINGS` and parsed by
:meth:`Config.from_env`; each probe is asked of a real :class:`HealthServer`; stop budgets are
computed from the engine's own shutdown constants; the command lines go through the CLI's own
parser. Two command lines really run: the systemd unit's ``ExecStart`` with its environment,
stopped the way ``KillMode=mixed`` stops it, and the image's ``ENTRYPOINT`` + the Deployment's
``args`` under the real tini as PID 1 of a new PID namespace, stopped as ``docker stop`` and the
kubelet stop a container (SIGTERM to PID 1).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import queue_counts

from goraxfast.cli.main import build_parser
from goraxfast.cli.moto_server import free_port
from goraxfast.config import SETTINGS, Config
from goraxfast.core.exit_codes import EXIT_CODES, EXIT_CONFIG
from goraxfast.core.health import evaluate
from goraxfast.core.message import ExecutionMessage, encode_message
from goraxfast.engine.engine import (
    FINAL_ACK_FLUSH_S,
    KILLED_REAP_WAIT_S,
    POLL_STOP_MARGIN_S,
    STOP_SIGNALS,
)
from goraxfast.ops.http import HealthServer
from goraxfast.ops.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
UNIT = DEPLOY / "systemd" / "goraxfast.service"
DEPLOYMENT = DEPLOY / "kubernetes" / "deployment.yaml"
SCALEDOBJECT = DEPLOY / "kubernetes" / "keda-scaledobject.yaml"
VENV_BIN = Path(sys.executable).parent
SETTING_NAMES = {setting.env for setting in SETTINGS}
#: botocore's own variables, which the engine leaves to botocore's credential chain.
AWS_STANDARD = {"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE"}
#: What systemd counts as a clean end besides exit 0 (systemd.service(5), SuccessExitStatus=).
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}

#: The aws-sqs-queue scaler's metadata (KEDA's pkg/scalers/aws_sqs_queue_scaler.go: queueURL
#: also as queueURLFromEnv). identityOwner is left out on purpose: deprecated since KEDA 2.13.
KEDA_SQS_METADATA = {
    "queueURL",
    "queueURLFromEnv",
    "queueLength",
    "activationQueueLength",
    "awsRegion",
    "awsEndpoint",
    "scaleOnInFlight",
    "scaleOnDelayed",
}
KEDA_SCALEDOBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
KEDA_TRIGGER = {"type", "metadata", "name", "authenticationRef", "metricType", "useCachedMetrics"}
KEDA_POD_IDENTITY = {
    "provider",
    "roleArn",
    "identityOwner",
    "identityId",
    "identityTenantId",
    "identityAuthorityHost",
}

#: The handler the deployment files name (``myapp.jobs:handle``), installed by the tests where
#: the files say the application lives. It traces to ``./trace`` (the service's working
#: directory), and runs what the message asks: a subprocess it waits for, or one it orphans.
HANDLER_SOURCE = """
import os
import subprocess


def _trace(*words):
    fd = os.open("trace", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(words) + "\\n").encode())
    finally:
        os.close(fd)


def {function}(message, info):
    spec = message.trigger_json() or {{}}
    _trace("start", message.execution_id)
    if spec.get("sleep_s"):
        subprocess.run(["sleep", str(spec["sleep_s"])], check=True)
    if spec.get("orphan"):
        subprocess.run(["sh", "-c", "sleep 0.1 &"], check=True)
    _trace("end", message.execution_id)
"""


# --- reading the files ------------------------------------------------------------------------


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order, as systemd reads a unit: comments, continuations,
    repeated keys kept (Environment=, SystemCallFilter= add up)."""
    entries: list[tuple[str, str, str]] = []
    section, pending = "", ""
    for raw in path.read_text().splitlines():
        line = (pending + raw.strip()) if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries(UNIT) if s == section and k == key]


def unit_value(key: str, section: str = "Service") -> str:
    values = unit_values(key, section)
    assert values, f"{UNIT.name} sets no {key}="
    return values[-1]  # a single-valued setting: the last assignment wins


def env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile: KEY=VALUE lines, # and ; comments, optional quotes."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        env[key.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
    return env


def unit_env_file() -> Path:
    (path,) = unit_values("EnvironmentFile")
    assert not path.startswith("-"), "a missing environment file must fail the start"
    return UNIT.parent / Path(path).name  # installed from deploy/systemd/ under that name


def unit_environment() -> dict[str, str]:
    """The service's environment as systemd builds it: Environment=, then the file over it."""
    env: dict[str, str] = {}
    for value in unit_values("Environment"):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val
    env.update(env_file(unit_env_file()))
    return env


def exec_start() -> list[str]:
    argv = shlex.split(unit_value("ExecStart"))
    assert not argv[0].startswith(("-", "@", "+", "!", ":")), "no ExecStart= prefixes"
    return argv


def success_exit(returncode: int) -> bool:
    """What the unit counts as a clean stop: 0, the clean signals, and SuccessExitStatus=."""
    extra = " ".join(unit_values("SuccessExitStatus")).split()
    if returncode >= 0:
        return returncode == 0 or str(returncode) in extra
    sig = signal.Signals(-returncode)
    return sig in CLEAN_SIGNALS or sig.name in extra


def seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9]+)(s|min)?", value)
    assert match, f"a time span systemd reads as seconds: {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def dockerfile_steps() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comment lines may sit inside a continuation too
        line = pending + stripped
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        instruction, _, args = line.partition(" ")
        steps.append((instruction.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return steps


def docker_args(instruction: str) -> str:
    (args,) = [a for i, a in dockerfile_steps() if i == instruction]
    return args


def exec_form(instruction: str) -> list[str]:
    """ENTRYPOINT/CMD in exec (JSON) form: a shell form would make /bin/sh PID 1's child."""
    value = json.loads(docker_args(instruction))
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), instruction
    return value


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_steps():
        if instruction == "ENV":
            for assignment in shlex.split(args):
                key, sep, value = assignment.partition("=")
                assert sep, f"ENV in key=value form: {assignment!r}"
                env[key] = value
    return env


def docker_copies() -> list[tuple[list[str], str]]:
    copies = []
    for instruction, args in dockerfile_steps():
        if instruction in ("COPY", "ADD"):
            assert instruction == "COPY", "ADD fetches and unpacks: COPY says what it does"
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copies.append((words[:-1], words[-1]))
    return copies


def image_path_of(repo_path: str) -> str:
    """Where a COPY puts a file or directory of the repository in the image."""
    for sources, dest in docker_copies():
        if repo_path in sources:
            return dest.rstrip("/") + "/" + Path(repo_path).name if dest.endswith("/") else dest
    raise AssertionError(f"the Dockerfile copies no {repo_path}")


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parent
    directories decides; ``*`` stays within one path element, ``**`` spans any number."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = rel.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        compiled = regex(pattern.lstrip("!").strip("/"))
        if any(compiled.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def manifests(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"].get("name"), doc
    return docs


def one(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in manifests(path) if d["kind"] == kind]
    return doc


def deployment() -> dict[str, Any]:
    return one(DEPLOYMENT, "Deployment")


def engine_container() -> dict[str, Any]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return container


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_env() -> dict[str, str]:
    """The container's environment as the kubelet resolves it (Downward API resource fields
    included: ceil(quantity / divisor))."""
    container = engine_container()
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            assert isinstance(item["value"], str), (
                f"{item['name']}: quote it, env values are strings"
            )
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["resourceFieldRef"]
        assert ref["containerName"] == container["name"]
        kind, _, resource = ref["resource"].partition(".")
        assert resource == "cpu", "only the CPU count is taken from the resources"
        cores = cpu_cores(container["resources"][kind]["cpu"])
        env[item["name"]] = str(math.ceil(cores / cpu_cores(ref.get("divisor", "1"))))
    return env


def longest_stop_s(env: dict[str, str]) -> float:
    """The engine's longest stop (engine.py, ``_shutdown``): workers get the grace period and,
    when killed at its end, up to KILLED_REAP_WAIT_S to be reaped, while the long polls in
    flight finish within their wait time + POLL_STOP_MARGIN_S; then the last acks get up to
    FINAL_ACK_FLUSH_S."""
    config = Config.from_env(env)
    return (
        max(config.shutdown_grace_s + KILLED_REAP_WAIT_S, config.wait_time_s + POLL_STOP_MARGIN_S)
        + FINAL_ACK_FLUSH_S
    )


def assert_real_settings(env: dict[str, str], where: str) -> None:
    unknown = set(env) - SETTING_NAMES - AWS_STANDARD
    assert not unknown, f"{where} sets variables goraxfast does not read: {sorted(unknown)}"
    Config.from_env(env)  # every value one the engine accepts (a ConfigError names the bad one)


def assert_engine_command(argv: list[str], where: str) -> None:
    """``argv`` (without the program) is a ``goraxfast run`` the CLI's own parser accepts."""
    args = build_parser().parse_args(argv)
    assert args._name == "run", where
    assert isinstance(args.handler, str), f"{where}: {args.handler}"


# --- running what the files say ---------------------------------------------------------------


def install_handler(app_dir: Path, handler: str) -> None:
    """Put a handler where ``--handler MODULE:FUNCTION`` looks for it, under ``app_dir``."""
    module, _, function = handler.partition(":")
    *packages, leaf = module.split(".")
    where = app_dir
    for package in packages:
        where = where / package
        where.mkdir(parents=True, exist_ok=True)
        (where / "__init__.py").write_text("")
    (where / f"{leaf}.py").write_text(HANDLER_SOURCE.format(function=function))


def handler_of(argv: list[str]) -> str:
    return argv[argv.index("--handler") + 1]


def server_env(config: Config, port: int) -> dict[str, str]:
    """What the tests change in a file's environment, and why each."""
    return {
        # the test's own moto server and queues instead of the placeholders
        "AWS_ENDPOINT": config.aws_endpoint,
        "AWS_REGION": config.aws_region,
        "AWS_ACCESS_KEY_ID": config.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": config.aws_secret_access_key,
        "AWS_SQS_QUEUE_URL": config.queue_url,
        "AWS_SQS_DLQ_URL": config.dlq_url,
        # a free port on loopback: the test shares the machine's network
        "WORKER_HEALTH_HOST": "127.0.0.1",
        "WORKER_HEALTH_PORT": str(port),
        # a stop waits for the long polls in flight: 20 s each with the files' wait time
        "QUEUE_WAIT_TIME_SECONDS": "1",
        # moto can hand one message to two concurrent receives (engine_support.engine_config)
        "QUEUE_POLLERS": "1",
        # this machine's two cores
        "WORKER_PROCESSES": "2",
    }


def base_env() -> dict[str, str]:
    """What a service manager starts from: not the test runner's environment."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def publish(boto_sqs: Any, queue_url: str, specs: list[dict[str, Any]], prefix: str) -> list[str]:
    entries, ids = [], []
    for n, spec in enumerate(specs):
        msg = ExecutionMessage.new(
            tenant_id="tenant-deploy",
            workflow_id="wf",
            workflow_version=1,
            trigger_type="deploy-test",
            trigger_data=json.dumps(spec).encode(),
            execution_id=f"{prefix}{n}",
        )
        ids.append(msg.execution_id)
        entries.append(
            {
                "Id": str(n),
                "MessageBody": encode_message(msg).decode(),
                "MessageAttributes": msg.message_attributes(),
            }
        )
    boto_sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    return ids


def traced(app_dir: Path, word: str) -> set[str]:
    trace = app_dir / "trace"
    lines = trace.read_text().splitlines() if trace.exists() else []
    return {line.split()[1] for line in lines if line.split()[0] == word}


def wait_for(
    what: str, predicate: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll a condition nothing signals (a file, a queue's counters), failing early with the
    engine's log if it exits first."""
    deadline = time.monotonic() + 30
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.02)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


# --- Kubernetes --------------------------------------------------------------------------------


def test_the_deployment_sets_only_real_settings_with_values_the_engine_accepts() -> None:
    env = pod_env()
    assert_real_settings(env, DEPLOYMENT.name)
    assert env["WORKER_HEALTH_HOST"] not in ("127.0.0.1", "localhost", "::1")  # probes come in
    assert int(env["WORKER_PROCESSES"]) == math.ceil(
        cpu_cores(engine_container()["resources"]["requests"]["cpu"])
    )


def test_the_deployment_runs_the_images_entrypoint_with_an_engine_command() -> None:
    container = engine_container()
    assert "command" not in container, "the image's ENTRYPOINT (tini) must stay PID 1"
    assert_engine_command(container["args"], DEPLOYMENT.name)
    assert container["args"] == exec_form("CMD")


def test_probes_and_the_scrape_annotation_use_the_port_the_engine_listens_on() -> None:
    container = engine_container()
    port = int(pod_env()["WORKER_HEALTH_PORT"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"metrics": port}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe_port = container[kind]["httpGet"]["port"]
        assert named.get(probe_port, probe_port) == port, kind
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    writer.close()
    content_type = next(
        (h.split(":", 1)[1].strip() for h in head if h.lower().startswith("content-type:")), ""
    )
    return int(head[0].split()[1]), content_type


async def test_each_probe_asks_the_engine_the_question_it_stands_for() -> None:
    """Liveness and startup follow the engine's liveness, readiness its readiness, whatever
    the other says; the scrape path is the Prometheus exposition."""
    container = engine_container()
    probes = {k: container[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]["path"]
    scrape = deployment()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    for live, is_ready in ((True, False), (False, True)):
        server = HealthServer(
            "127.0.0.1",
            0,
            metrics_text=lambda: "goraxfast_up 1\n",
            health=lambda: evaluate(None, now=0.0, interval_s=30.0, max_depth=0),
            ready=lambda is_ready=is_ready: (is_ready, "ready" if is_ready else "draining"),
            live=lambda live=live: (live, "alive" if live else "zygote gone"),
        )
        await server.start()
        try:
            answers = {kind: (await _get(server.port, path))[0] for kind, path in probes.items()}
            metrics = await _get(server.port, scrape)
        finally:
            await server.stop()
        expected = {"startupProbe": live, "livenessProbe": live, "readinessProbe": is_ready}
        assert {kind: status == 200 for kind, status in answers.items()} == expected
        assert metrics == (200, METRICS_CONTENT_TYPE)


def test_the_termination_grace_period_covers_the_engines_longest_stop() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= longest_stop_s(pod_env())


def test_the_pod_runs_as_the_images_non_root_user() -> None:
    user, _, group = docker_args("USER").partition(":")
    context = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user), int(group))


def test_the_keda_trigger_uses_only_scaler_fields_and_the_deployments_queue_and_region() -> None:
    scaled = one(SCALEDOBJECT, "ScaledObject")
    auth = one(SCALEDOBJECT, "TriggerAuthentication")
    spec = scaled["spec"]
    assert set(spec) <= KEDA_SCALEDOBJECT_SPEC
    assert spec["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
    assert spec["scaleTargetRef"]["envSourceContainerName"] == engine_container()["name"]
    assert "replicas" not in deployment()["spec"], "the HPA KEDA makes owns the replica count"
    (trigger,) = spec["triggers"]
    assert set(trigger) <= KEDA_TRIGGER and trigger["type"] == "aws-sqs-queue"
    metadata = trigger["metadata"]
    assert set(metadata) <= KEDA_SQS_METADATA
    assert all(isinstance(v, str) for v in metadata.values()), "metadata is a map of strings"
    env = pod_env()
    queue_url = env[metadata["queueURLFromEnv"]] if "queueURLFromEnv" in metadata else None
    assert (queue_url or metadata["queueURL"]) == env["AWS_SQS_QUEUE_URL"]
    assert metadata["awsRegion"] == env["AWS_REGION"]
    for variable in ("AWS_SQS_QUEUE_URL", "AWS_SQS_DLQ_URL"):
        assert f"sqs.{env['AWS_REGION']}.amazonaws.com" in env[variable], variable
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    identity = auth["spec"]["podIdentity"]
    assert set(identity) <= KEDA_POD_IDENTITY
    assert identity["provider"] == "aws" and identity.get("identityOwner") in ("keda", "workload")


def test_the_keda_target_exceeds_what_one_pod_keeps_in_flight() -> None:
    """In-flight messages count (scaleOnInFlight), and an engine receives ahead of its handlers:
    a target below what one pod holds would add pods for messages already taken."""
    metadata = one(SCALEDOBJECT, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert metadata.get("scaleOnInFlight", "true") == "true"
    config = Config.from_env(pod_env())
    assert config.prefetch is not None, "an automatic prefetch (up to 2,500) has no bound here"
    assert int(metadata["queueLength"]) > config.concurrent_workers + config.prefetch


# --- the image -------------------------------------------------------------------------------


def test_every_copy_source_exists_and_the_ignore_file_keeps_it_in_the_context() -> None:
    patterns = ignore_patterns()
    for sources, _ in docker_copies():
        for source in sources:
            path = REPO / source
            assert path.exists(), source
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not ignored(rel, patterns), f"{rel} is left out of the build context"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "bench/__init__.py"):
        assert ignored(heavy, patterns), heavy


def test_the_image_installs_the_copied_pyproject_with_pip_as_the_tests_do() -> None:
    target = image_path_of("pyproject.toml").rsplit("/", 1)[0]
    installs = [a for i, a in dockerfile_steps() if i == "RUN" and "pip install" in a]
    assert len(installs) == 1 and f"pip install {target} " in installs[0] + " "
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    # what the build reads from the source tree is all in the image's copy of it
    assert image_path_of(project["project"]["readme"]) == f"{target}/README.md"
    for include in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = include.rstrip("*")
        assert image_path_of(package) == f"{target}/{package}"
    # the ENTRYPOINT's program is the console script that install creates
    assert exec_form("ENTRYPOINT")[-1] in project["project"]["scripts"]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = docker_args("USER").partition(":")
    assert user.isdigit() and int(user) != 0, "numeric, so runAsNonRoot can check it"
    assert group.isdigit() and int(group) != 0


def test_the_image_and_the_unit_run_the_same_engine_command() -> None:
    entrypoint, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    argv = exec_start()
    assert entrypoint[entrypoint.index("--") + 1 :] + cmd == [Path(argv[0]).name, *argv[1:]]
    assert_engine_command(cmd, DOCKERFILE.name)
    assert_engine_command(argv[1:], UNIT.name)


def test_the_stop_signal_goes_to_the_engine_alone_in_the_image_and_the_unit() -> None:
    """tini without -g and KillMode=mixed: the engine drains its own workers, and a handler's
    subprocesses are not signalled, so they finish with their handler within the grace."""
    entrypoint = exec_form("ENTRYPOINT")
    assert Path(entrypoint[0]).name == "tini"
    assert entrypoint[1:] == ["--", "goraxfast"], "no -g: the group is the engine's to stop"
    assert signal.Signals[docker_args("STOPSIGNAL")] in STOP_SIGNALS
    assert unit_value("KillMode") == "mixed"
    assert signal.Signals[unit_value("KillSignal")] in STOP_SIGNALS


def test_the_image_listens_where_the_deployment_probes() -> None:
    env = docker_env()
    unknown = {k for k in env if not k.startswith(("PYTHON", "PIP_"))} - SETTING_NAMES
    assert not unknown, unknown
    assert docker_args("EXPOSE") == env["WORKER_HEALTH_PORT"] == pod_env()["WORKER_HEALTH_PORT"]
    assert env["WORKER_HEALTH_HOST"] == pod_env()["WORKER_HEALTH_HOST"] == "0.0.0.0"


# --- systemd ---------------------------------------------------------------------------------


def test_the_unit_sets_only_real_settings_with_values_the_engine_accepts() -> None:
    assert_real_settings(unit_environment(), UNIT.name)


def test_the_units_stop_timeout_covers_the_engines_longest_stop() -> None:
    assert seconds(unit_value("TimeoutStopSec")) >= longest_stop_s(unit_environment())


def test_the_unit_restarts_every_exit_but_a_configuration_mistake() -> None:
    assert unit_value("Restart") == "always"
    assert unit_value("RestartPreventExitStatus").split() == [str(EXIT_CONFIG)]
    engine_codes = {c.code for c in EXIT_CODES if c.process == "engine"}
    assert EXIT_CONFIG in engine_codes and not success_exit(EXIT_CONFIG)
    assert unit_value("OOMPolicy") == "continue"  # a worker's OOM kill is the engine's to mend
    assert unit_value("DynamicUser") == "yes"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_knows_every_directive_of_the_unit(tmp_path: Path) -> None:
    """The unit as systemd itself reads it, with its paths pointed at this checkout."""
    text = UNIT.read_text()
    text = text.replace(exec_start()[0], str(VENV_BIN / "goraxfast"))
    text = text.replace(unit_value("WorkingDirectory"), str(tmp_path))
    text = text.replace(unit_value("EnvironmentFile"), str(unit_env_file()))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.slow
def test_the_units_command_drains_a_queue_and_stops_cleanly_as_systemd_stops_it(
    config: Config, boto_sqs: Any, tmp_path: Path
) -> None:
    """ExecStart= with the unit's environment, in a session of its own like a service; after
    a first batch drained, two handlers each wait on a subprocess when the stop comes. The unit
    stops as KillMode=mixed does: KillSignal to the main process, then, once it has exited,
    SIGKILL to whatever is left of the group. Both handlers finish (their subprocesses were
    not signalled), exit status clean, nothing left for the SIGKILL."""
    argv = exec_start()
    assert argv[0].startswith("/") and Path(argv[0]).name == "goraxfast"
    app_dir = tmp_path / "app"  # WorkingDirectory=
    install_handler(app_dir, handler_of(argv))
    port = free_port()
    env = {**base_env(), **unit_environment(), **server_env(config, port)}
    log = tmp_path / "journal"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "goraxfast"), *argv[1:]],
            cwd=app_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for("the engine to be ready", lambda: ready(port), proc, log)
        first = publish(boto_sqs, config.queue_url, [{}] * 4, "first-")
        wait_for("the first batch", lambda: traced(app_dir, "end") >= set(first), proc, log)
        wait_for(
            "its deletes", lambda: queue_counts(boto_sqs, config.queue_url) == (0, 0), proc, log
        )
        slow = publish(boto_sqs, config.queue_url, [{"sleep_s": 1}] * 2, "slow-")
        wait_for("both to start", lambda: traced(app_dir, "start") >= set(slow), proc, log)
        os.kill(proc.pid, signal.Signals[unit_value("KillSignal")])
        returncode = proc.wait(timeout=seconds(unit_value("TimeoutStopSec")))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert success_exit(returncode), f"exit {returncode}:\n{output}"
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # KillMode=mixed's last step finds no one
    assert traced(app_dir, "end") >= set(slow), output
    assert queue_counts(boto_sqs, config.queue_url) == (0, 0), output  # run once, deleted
    assert "stopped: received=" in output, output


# --- the image's entrypoint, as a container runs it --------------------------------------------


def _pid_namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("tini") is None, reason="tini not installed (apt-get install tini)"
)
@pytest.mark.skipif(not _pid_namespaces_work(), reason="needs root and unshare --pid")
def test_the_images_entrypoint_under_tini_as_pid_1_reaps_orphans_and_drains_on_sigterm(
    config: Config, boto_sqs: Any, tmp_path: Path
) -> None:
    """ENTRYPOINT + the Deployment's args (they replace CMD), the image's ENV and the pod's
    env, in the image's WORKDIR layout, with tini as PID 1 of a new PID namespace. Handlers
    orphan a subprocess each: tini reaps them (the engine as PID 1 would keep them as zombies).
    SIGTERM to PID 1, as docker stop and the kubelet send it, drains the engine: exit 0."""
    entrypoint = exec_form("ENTRYPOINT")
    command = [shutil.which(Path(entrypoint[0]).name) or "", *entrypoint[1:]]
    args = engine_container()["args"]
    app_dir = tmp_path / "app"  # WORKDIR
    install_handler(app_dir, handler_of(args))
    port = free_port()
    env = {**base_env(), **docker_env(), **pod_env(), **server_env(config, port)}
    log = tmp_path / "container-log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command, *args],
            cwd=app_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for("the engine to be ready", lambda: ready(port), proc, log)
        (pid_1,) = children(proc.pid)
        assert comm(pid_1) == "tini"
        (engine,) = children(pid_1)
        ids = publish(boto_sqs, config.queue_url, [{"orphan": True}] * 3, "orphan-")
        wait_for("the batch", lambda: traced(app_dir, "end") >= set(ids), proc, log)
        wait_for(
            "its deletes", lambda: queue_counts(boto_sqs, config.queue_url) == (0, 0), proc, log
        )
        wait_for("the orphans to be reaped", lambda: children(pid_1) == [engine], proc, log)
        os.kill(pid_1, signal.Signals[docker_args("STOPSIGNAL")])
        returncode = proc.wait(
            timeout=deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )
    finally:
        if proc.poll() is None:
            proc.kill()  # --kill-child takes the namespace with it
            proc.wait()
    output = log.read_text()
    assert returncode == 0, f"exit {returncode}:\n{output}"
    assert "stopped: received=" in output, output
