"""The parts of goraxfast.cli.localstack that need no LocalStack: environment, command, interpreter
discovery, loopback checks and the command line's exit codes. (Starting it is verified by hand:
it needs a ~500 MB install.)"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goraxfast.cli.localstack import (
    PINS,
    LocalStack,
    find_python313,
    non_loopback,
    parse_proc_net_tcp,
    runtime_env,
)
from goraxfast.cli.moto_server import free_port


def test_runtime_env_binds_loopback_sqs_only_with_hypercorn(tmp_path: Path) -> None:
    env = runtime_env(4599, tmp_path / "volume", {})
    assert env == {
        "GATEWAY_LISTEN": "127.0.0.1:4599",
        "LOCALSTACK_HOST": "127.0.0.1:4599",
        "GATEWAY_SERVER": "hypercorn",
        "SERVICES": "sqs",
        "EAGER_SERVICE_LOADING": "1",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "SQS_ENDPOINT_STRATEGY": "path",
        "PERSISTENCE": "0",
        "LOCALSTACK_VOLUME_DIR": str(tmp_path / "volume"),
    }


def test_runtime_env_keeps_the_callers_env_but_not_our_interpreter_settings(
    tmp_path: Path,
) -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "VIRTUAL_ENV": "/x/.venv", "PYTHONPATH": "/x"}
    env = runtime_env(4566, tmp_path, base)
    assert (env["PATH"], env["HOME"]) == ("/usr/bin", "/root")
    assert "VIRTUAL_ENV" not in env
    assert "PYTHONPATH" not in env


def test_command_runs_the_runtime_from_its_own_venv(tmp_path: Path) -> None:
    stack = LocalStack(port=4566, directory=tmp_path)
    assert stack.command() == [str(tmp_path / "venv/bin/python"), "-m", "localstack.runtime.main"]
    assert stack.endpoint == "http://127.0.0.1:4566"


def test_pins_are_the_measured_working_set() -> None:
    assert PINS == (
        "localstack-core[runtime]==2026.3.0",
        "cbor2<6",
        "pyopenssl<25",
        "cryptography<45",
        "service_identity",
    )


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_find_python313_skips_a_broken_shim_on_path_for_a_working_pyenv_one(
    tmp_path: Path,
) -> None:
    _script(tmp_path / "shims/python3.13", "echo 'pyenv: python3.13: command not found'; exit 127")
    good = _script(tmp_path / "pyenv/versions/3.13.0/bin/python3.13", "exit 0")
    found = find_python313(path=str(tmp_path / "shims"), pyenv_roots=[tmp_path / "pyenv"])
    assert found == str(good)


def test_find_python313_prefers_the_newest_pyenv_patch_release(tmp_path: Path) -> None:
    for version in ("3.13.0", "3.13.2"):
        _script(tmp_path / f"pyenv/versions/{version}/bin/python3.13", "exit 0")
    found = find_python313(path=str(tmp_path / "empty"), pyenv_roots=[tmp_path / "pyenv"])
    assert found == str(tmp_path / "pyenv/versions/3.13.2/bin/python3.13")


def test_find_python313_rejects_an_interpreter_of_another_version(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python3.13").symlink_to(sys.executable)  # really 3.11 or 3.12
    if sys.version_info[:2] == (3, 13):
        pytest.skip("the test interpreter is itself 3.13")
    assert find_python313(path=str(tmp_path / "bin"), pyenv_roots=[]) is None


# /proc/net/tcp as the kernel writes it: addresses as host-order 32-bit words (x86: little-endian).
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:11D6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 00000000:11D7 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2
   2: 0100007F:11D6 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:11D6 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:11D8 00000000000000000000000000000000:0000 0A
   2: 0000000000000000FFFF00000100007F:11D9 00000000000000000000000000000000:0000 0A
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="sample tables are from an x86 kernel")
def test_proc_net_tcp_lists_only_listening_sockets_with_their_address() -> None:
    assert parse_proc_net_tcp(PROC_NET_TCP) == [("127.0.0.1", 4566), ("0.0.0.0", 4567)]


@pytest.mark.skipif(sys.byteorder != "little", reason="sample tables are from an x86 kernel")
def test_proc_net_tcp6_decodes_ipv6_and_mapped_addresses() -> None:
    parsed = [(ipaddress.ip_address(a), p) for a, p in parse_proc_net_tcp(PROC_NET_TCP6)]
    assert parsed == [
        (ipaddress.ip_address("::1"), 4566),
        (ipaddress.ip_address("::"), 4568),
        (ipaddress.ip_address("::ffff:127.0.0.1"), 4569),  # spelled ::ffff:7f00:1 before 3.13
    ]


def test_only_loopback_listeners_pass_the_exposure_check() -> None:
    listeners = [
        ("127.0.0.1", 1),
        ("::1", 2),
        ("::ffff:127.0.0.1", 3),
        ("0.0.0.0", 4),
        ("::", 5),
        ("10.1.2.3", 6),
    ]
    assert non_loopback(listeners) == [("0.0.0.0", 4), ("::", 5), ("10.1.2.3", 6)]


def test_stop_ignores_a_pid_file_naming_some_other_process(tmp_path: Path) -> None:
    stack = LocalStack(port=free_port(), directory=tmp_path)
    stack.pid_path.write_text(f"{os.getpid()}\n")  # a reused pid: must not be killed
    assert stack.stop() is False
    assert not stack.pid_path.exists()


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": str(tmp_path / "no-python-here"),
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "GORAXFAST_LOCALSTACK_DIR": str(tmp_path / "state"),
        "GORAXFAST_LOCALSTACK_PORT": str(free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", "goraxfast.cli.localstack", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_without_python313_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    done = _cli(tmp_path, "start")
    assert done.returncode == 3
    assert "LocalStack needs Python 3.13" in done.stderr


def test_status_of_a_stopped_server_names_the_endpoint_and_exits_1(tmp_path: Path) -> None:
    done = _cli(tmp_path, "status", GORAXFAST_LOCALSTACK_PORT="4599")
    assert done.returncode == 1
    assert "http://127.0.0.1:4599" in done.stdout
    assert "not running" in done.stdout


def test_stop_when_nothing_runs_succeeds(tmp_path: Path) -> None:
    done = _cli(tmp_path, "stop")
    assert done.returncode == 0
    assert "not running" in done.stdout


def test_bad_port_variable_is_refused_with_its_value(tmp_path: Path) -> None:
    done = _cli(tmp_path, "status", GORAXFAST_LOCALSTACK_PORT="http")
    assert done.returncode == 1
    assert "GORAXFAST_LOCALSTACK_PORT='http'" in done.stderr
