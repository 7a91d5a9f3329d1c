"""Build the Ray Serve application (``build_app``), start it for ``loradeck serve --ray`` (``run``), or let a Ray Serve
config file build it (``app_builder``, see docs/scale-out.md).

Two deployments: ``LoradeckIngress`` (one replica: HTTP, auth, routing) and ``LoradeckReplica`` (N replicas, each
one studio on its own device). Every replica reads the same home: the models and LoRA folders, config.json (A1111's
options) and the outputs folder must be the same path on every node (a shared file system), so a LoRA trained or
downloaded on one replica is seen by all after the refresh the ingress broadcasts when the job ends.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loradeck.settings import Settings, load_settings

log = logging.getLogger("loradeck.ray")
APP_NAME = "loradeck"
REPLICA_DEPLOYMENT = "LoradeckReplica"
# Requests a replica accepts at once: its studio's queue holds them and orders them (LoRA affinity, fairness), so
# Ray must not hold them back in the ingress.
MAX_ONGOING = 256


@dataclass(frozen=True)
class ClusterOptions:
    replicas: int = 2
    num_cpus_per_replica: float = 1.0
    num_gpus_per_replica: float = 0.0
    ingress_cpus: float = 0.25
    auth: dict[str, str] | None = None
    fairness: int = 4  # the replica queues' bound
    slack: int = 2  # the ingress's load bound for stack stickiness (policy.py)
    routing: str = "stack"  # or "ray": Ray's own power-of-two routing over the checkpoint's holders
    routing_header: bool = False  # allow X-Loradeck-Routing per request (the benchmark)
    health_check_period_s: float = 5.0
    preload: bool = True
    cmd_flags: dict[str, Any] = field(default_factory=dict)


def build_app(settings: Settings, options: ClusterOptions | None = None) -> Any:
    """The bound Ray Serve application (give it to ``serve.run``)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from loradeck.ray.ingress import IngressConfig, LoradeckIngress
    from loradeck.ray.replica import LoradeckReplica, ReplicaConfig

    o = options or ClusterOptions()
    if o.replicas < 1:
        raise ValueError("replicas must be 1 or more")
    if o.routing not in ("stack", "ray"):
        raise ValueError("routing must be 'stack' or 'ray'")
    replica = serve.deployment(
        LoradeckReplica,
        name=REPLICA_DEPLOYMENT,
        num_replicas=o.replicas,
        max_ongoing_requests=MAX_ONGOING,
        ray_actor_options={"num_cpus": o.num_cpus_per_replica, "num_gpus": o.num_gpus_per_replica},
        health_check_period_s=o.health_check_period_s,
        graceful_shutdown_timeout_s=10,
        request_router_config=RequestRouterConfig(request_router_class="loradeck.ray.router:PinnedRouter"),
    )
    ingress = serve.deployment(
        LoradeckIngress,
        name="LoradeckIngress",
        num_replicas=1,  # one ingress: the sticky map and the job table live in it
        max_ongoing_requests=4 * MAX_ONGOING,
        ray_actor_options={"num_cpus": o.ingress_cpus},
        health_check_period_s=o.health_check_period_s,
    )
    replica_config = ReplicaConfig(fairness=o.fairness, preload=o.preload, cmd_flags=dict(o.cmd_flags))
    ingress_config = IngressConfig(
        deployment=REPLICA_DEPLOYMENT, auth=o.auth, routing=o.routing, routing_header=o.routing_header, slack=o.slack
    )
    return ingress.bind(replica.bind(settings, replica_config), settings, ingress_config)


def app_builder(args: dict[str, Any]) -> Any:
    """For a Ray Serve config file (``import_path: loradeck.ray.deploy:app_builder``): ``args`` holds settings
    (home, models_dir, lora_dir, outputs_dir, device, dtype) and ClusterOptions fields; ``api_auth`` is
    "user:pass[,user2:pass2]" as on the command line."""
    from loradeck.server.auth import parse_credentials

    args = dict(args or {})
    setting_keys = ("home", "models_dir", "lora_dir", "outputs_dir", "device", "dtype", "datasets_dir")
    overrides: dict[str, Any] = {k: args.pop(k) for k in setting_keys if k in args}
    for key in ("home", "models_dir", "lora_dir", "outputs_dir", "datasets_dir"):
        if key in overrides:
            overrides[key] = Path(overrides[key]).expanduser()
    auth = args.pop("api_auth", None)
    options = ClusterOptions(**args, auth=parse_credentials(auth) if auth else None)
    return build_app(load_settings(**overrides), options)


def run(
    settings: Settings,
    options: ClusterOptions,
    *,
    address: str | None,
    host: str,
    port: int,
    on_ready: Any = None,
) -> None:
    """Start (or join) a Ray cluster, run loradeck on it at http://host:port/, and stop on SIGTERM/Ctrl-C (our app
    is deleted; a cluster this call started is shut down)."""
    import ray
    from ray import serve

    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        if options.num_cpus_per_replica <= 0:  # auto: share this cluster's CPUs (minus the ingress's)
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            share = max(0.01, min(1.0, (cpus - options.ingress_cpus) / options.replicas))
            options = _with(options, num_cpus_per_replica=math.floor(share * 100) / 100)  # never over the total
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(settings, options), name=APP_NAME, route_prefix="/", blocking=False)
        if on_ready is not None:
            on_ready()
        _wait_for_signal()
    finally:
        try:
            serve.delete(APP_NAME)
            if address is None:
                serve.shutdown()
        finally:
            ray.shutdown()


def _with(options: ClusterOptions, **changes: Any) -> ClusterOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
