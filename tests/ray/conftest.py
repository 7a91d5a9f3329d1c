"""A local CPU-only Ray cluster with loradeck on it (2 replicas on the demo model), started and stopped by the test
module itself, and a single-process server over an equal home to compare pictures with."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

AUTH = ("tester", "s3cret")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _home(root):
    from tests.server.helpers import write_variant_checkpoint

    models = root / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    write_variant_checkpoint(models)
    (root / "models" / "Lora").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """2 replicas (0.5 CPU each) and the ingress (0.25 CPU) on a 2-CPU local Ray; HTTP Basic on."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'loradeck[ray]')")
    serve = pytest.importorskip("ray.serve")

    from loradeck.ray.deploy import ClusterOptions, build_app
    from loradeck.settings import load_settings

    home = _home(tmp_path_factory.mktemp("rayhome"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ClusterOptions(
            replicas=2, num_cpus_per_replica=0.5, ingress_cpus=0.25, auth=dict([AUTH]), health_check_period_s=1
        )
        serve.run(build_app(load_settings(home=home), options), name="loradeck", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, auth=AUTH, timeout=180) as client:
            yield {"url": url, "port": port, "home": home, "client": client}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The same API without Ray: one studio over an equal home (its own folder: options persist per home)."""
    import torch

    from loradeck.server import create_app
    from loradeck.services.studio import Studio
    from tests.server.helpers import running_server

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with num_cpus < 1 (OMP_NUM_THREADS=1): the same float reductions
    home = _home(tmp_path_factory.mktemp("singlehome"))
    app = create_app(Studio(home=home), fairness=4, preload=True)
    try:
        with running_server(app) as url, httpx.Client(base_url=url, timeout=180) as client:
            yield {"url": url, "client": client, "home": home, "app": app}
    finally:
        torch.set_num_threads(threads)
