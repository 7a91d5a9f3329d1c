"""`loradeck serve`: the A1111 REST API (and, once mounted, the web UI) on one port."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loradeck.cli.common import EmbeddingsDir, LoraDir, ModelsDir, console, make_studio


def serve(
    host: Annotated[str, typer.Option(help="Address to bind (default 127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API and the web UI.")] = 7860,
    listen: Annotated[bool, typer.Option("--listen", help="Bind 0.0.0.0 (every interface); needs --api-auth.")] = False,
    api_auth: Annotated[
        str | None, typer.Option("--api-auth", help='HTTP Basic credentials "user:pass[,user2:pass2]" for every route.')
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow --listen without --api-auth (anyone on the network can use it).")
    ] = False,
    fairness: Annotated[
        int, typer.Option(help="How many later jobs may overtake a waiting one for LoRA affinity (0 = FIFO).")
    ] = 4,
    models_dir: ModelsDir = None,
    lora_dir: LoraDir = None,
    embeddings_dir: EmbeddingsDir = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps or cpu.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, fp32, fp16 or bf16.")] = None,
    allow_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-path",
            help="A folder outside the home that API and web-UI clients may also name by path (checkpoints, training "
            "data); repeat for several. By default they only use names inside the configured folders.",
        ),
    ] = None,
    datasets_dir: Annotated[
        Path | None, typer.Option(help="Folder the API and web UI train from (default <home>/datasets).")
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray", help="Scale out on Ray Serve: N replicas, one model each, behind this API (needs the ray extra)."
        ),
    ] = False,
    replicas: Annotated[int, typer.Option(min=1, help="With --ray: how many replicas (one studio each).")] = 2,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="With --ray: 'auto' or ray://host:10001 to join a cluster (default: start one here)."
        ),
    ] = None,
    num_gpus_per_replica: Annotated[
        float, typer.Option(min=0, help="With --ray: GPUs each replica reserves (0 = CPU; 1 = one GPU each).")
    ] = 0.0,
    num_cpus_per_replica: Annotated[
        float, typer.Option(min=0, help="With --ray: CPUs each replica reserves (0 = share the cluster's CPUs).")
    ] = 0.0,
) -> None:
    """Serve the A1111-compatible API (/sdapi/v1) and loradeck's own (/loradeck/v1)."""
    from loradeck.errors import InvalidRequest
    from loradeck.server import create_app, parse_credentials
    from loradeck.server.shutdown import serve as serve_until_signal
    from loradeck.ui import mount_ui

    if listen:
        host = "0.0.0.0"
        if not api_auth and not insecure:
            raise InvalidRequest(
                "--listen exposes the server to the network; give --api-auth user:password (or --insecure to allow "
                "anyone)."
            )
    auth = parse_credentials(api_auth) if api_auth else None
    if ray:
        _serve_on_ray(
            auth=auth, host=host, port=port, listen=listen, fairness=fairness, replicas=replicas, address=ray_address,
            gpus=num_gpus_per_replica, cpus=num_cpus_per_replica,
            overrides=dict(models_dir=models_dir, lora_dir=lora_dir, device=device, dtype=dtype,
                           datasets_dir=datasets_dir, allowed_paths=allow_path or None),
        )  # fmt: skip
        return
    studio = make_studio(
        models_dir=models_dir,
        lora_dir=lora_dir,
        embeddings_dir=embeddings_dir,
        device=device,
        dtype=dtype,
        datasets_dir=datasets_dir,
        allowed_paths=allow_path or None,  # none given: the setting from config.toml / LORADECK_ALLOWED_PATHS
    )
    app = create_app(studio, auth=auth, fairness=fairness, preload=True)
    app = mount_ui(app, studio)  # the web UI at "/" on this same app and port (added by the UI's owner)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"loradeck web UI on [bold]http://{shown}:{port}/[/], A1111 API at /sdapi/v1, ours at /loradeck/v1 "
        f"(docs: http://{shown}:{port}/docs)"
    )
    if host == "0.0.0.0" and not auth:
        console.print("[bold yellow]warning:[/] listening on every interface without authentication (--insecure)")
    app.state.cmd_flags = {"listen": listen, "port": port, "api_auth_enabled": bool(auth)}  # for /sdapi/v1/cmd-flags
    serve_until_signal(app, host=host, port=port)  # SIGTERM/Ctrl-C interrupt the running job first


def _serve_on_ray(
    *, auth, host: str, port: int, listen: bool, fairness: int, replicas: int, address: str | None, gpus: float,
    cpus: float, overrides: dict,
) -> None:  # fmt: skip
    """The same API on a Ray Serve cluster (loradeck.ray): an ingress (auth, routing) and ``replicas`` studios."""
    from loradeck.errors import InvalidRequest

    try:
        from loradeck.ray.deploy import ClusterOptions, run
    except ImportError:
        raise InvalidRequest("--ray needs the ray extra: pip install 'loradeck[ray]'.") from None
    from loradeck.settings import load_settings

    settings = load_settings(**overrides)
    options = ClusterOptions(
        replicas=replicas, num_cpus_per_replica=cpus, num_gpus_per_replica=gpus, auth=auth, fairness=fairness,
        cmd_flags={"listen": listen, "port": port, "api_auth_enabled": bool(auth)},
    )  # fmt: skip
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host

    def ready() -> None:
        console.print(
            f"loradeck on Ray Serve: {replicas} replicas behind http://{shown}:{port}/ — A1111 API at /sdapi/v1, ours "
            f"at /loradeck/v1, the cluster at /loradeck/v1/cluster (the web UI is not served through Ray)"
        )
        if host == "0.0.0.0" and not auth:
            console.print("[bold yellow]warning:[/] listening on every interface without authentication (--insecure)")

    run(settings, options, address=address, host=host, port=port, on_ready=ready)
