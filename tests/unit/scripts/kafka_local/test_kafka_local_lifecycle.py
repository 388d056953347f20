"""up/down/status: the safety checks that run before any JVM starts, and never signalling a process that is not ours."""

from __future__ import annotations

import os
import socket

import pytest

from scripts import kafka_local as kl


def test_status_of_a_fresh_run_dir_is_not_running(paths: kl.LocalKafkaPaths) -> None:
    assert kl.status(paths=paths) == {
        "running": False, "pid": None, "bootstrap": None, "log": str(paths.run_dir / "broker.log"),
    }
    assert kl.down(paths=paths) is False


def test_a_pid_file_naming_another_process_is_never_signalled(paths: kl.LocalKafkaPaths) -> None:
    """Scenario: the pid file names a live process that is not our broker (this test). We expect it untouched."""
    paths.run_dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")
    assert kl.status(paths=paths)["running"] is False
    assert kl.down(paths=paths, timeout_s=0.1) is False  # we are still here, so nothing was killed
    assert not paths.pid_file.exists()  # the stale pid file is gone


def test_up_refuses_a_port_someone_else_listens_on(paths: kl.LocalKafkaPaths) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with pytest.raises(kl.KafkaLocalError, match=f"port 127.0.0.1:{taken} is in use by another process"):
            kl.up(port=taken, controller_port=taken + 1 if taken < 65535 else taken - 1, paths=paths)
    assert not paths.pid_file.exists()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"heap": "lots"}, "invalid heap size"),
        ({"port": 9092, "controller_port": 9092}, "must differ"),
        ({"port": 0}, "invalid port 0"),
    ],
)
def test_up_rejects_bad_arguments_before_starting_anything(
    paths: kl.LocalKafkaPaths, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(kl.KafkaLocalError, match=message):
        kl.up(paths=paths, **kwargs)  # type: ignore[arg-type]  # deliberately bad values
    assert not paths.pid_file.exists()
