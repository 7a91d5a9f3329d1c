"""`loradeck serve --ray`: the flags become the cluster's options, with the single server's secure defaults (no Ray
started here: ``deploy.run`` is replaced; tests/ray/test_serve.py runs the real thing)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from loradeck.errors import InvalidRequest


@pytest.fixture
def captured(monkeypatch, home):
    from loradeck.ray import deploy

    calls: list[dict] = []
    monkeypatch.setattr(
        deploy, "run", lambda settings, options, **kw: calls.append(dict(kw, settings=settings, options=options))
    )
    return calls


def test_serve_ray_flags_become_the_cluster(captured, home):
    from loradeck.cli import app

    args = ["serve", "--ray", "--replicas", "3", "--ray-address", "auto", "--num-gpus-per-replica", "1",
            "--api-auth", "alice:pw", "--port", "9001", "--fairness", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (call,) = captured
    options = call["options"]
    assert (call["address"], call["host"], call["port"]) == ("auto", "127.0.0.1", 9001)  # this machine only by default
    assert (options.replicas, options.num_gpus_per_replica, options.num_cpus_per_replica) == (3, 1.0, 0.0)
    assert options.auth == {"alice": "pw"} and options.fairness == 2 and options.routing == "stack"
    assert options.cmd_flags == {"listen": False, "port": 9001, "api_auth_enabled": True}
    assert call["settings"].home == home


def test_serve_ray_listen_needs_auth_like_the_single_server(captured):
    from loradeck.cli import app

    result = CliRunner().invoke(app, ["serve", "--ray", "--listen"])
    assert isinstance(result.exception, InvalidRequest) and "--api-auth" in str(result.exception)
    assert captured == []
    result = CliRunner().invoke(app, ["serve", "--ray", "--listen", "--api-auth", "a:b"])
    assert result.exit_code == 0 and captured[0]["host"] == "0.0.0.0"


def test_a_serve_config_file_builds_the_same_application(tmp_path):
    """docs/scale-out.md's ``import_path: loradeck.ray.deploy:app_builder`` with its ``args``."""
    pytest.importorskip("ray.serve")
    from loradeck.ray.deploy import app_builder

    args = {"home": str(tmp_path), "api_auth": "team:pw", "replicas": 3, "num_gpus_per_replica": 1, "slack": 1}
    ingress = app_builder(args)._bound_deployment  # Ray's Application (ray is pinned: the attribute is stable)
    replicas, settings, config = ingress.init_args
    replica = replicas._bound_deployment
    assert (ingress.name, replica.name, replica.num_replicas) == ("LoradeckIngress", "LoradeckReplica", 3)
    assert replica.ray_actor_options["num_gpus"] == 1 and settings.home == tmp_path
    assert config.auth == {"team": "pw"} and config.slack == 1 and config.deployment == replica.name
    with pytest.raises(ValueError, match="routing"):
        app_builder({"home": str(tmp_path), "routing": "random"})
