"""`loradeck serve` stops on SIGTERM by interrupting the running job: the client gets its (interrupted) answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_interrupts_the_running_job_and_exits(tmp_path):
    port = free_port()
    env = dict(os.environ, LORADECK_HOME=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loradeck", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/sdapi/v1"
    try:
        for _ in range(600):
            try:
                requests.get(f"{url}/options", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        answer: dict = {}

        def long_job():
            body = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 150, "seed": 1}
            answer["response"] = requests.post(f"{url}/txt2img", json=body, timeout=300)

        thread = threading.Thread(target=long_job)
        thread.start()
        for _ in range(3000):  # until sampling has started
            state = requests.get(f"{url}/progress?skip_current_image=true").json()["state"]
            if state["sampling_step"] >= 1:
                break
            time.sleep(0.05)
        assert state["sampling_step"] >= 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        thread.join(120)
        response = answer["response"]
        assert response.status_code == 200 and response.json()["images"] == []
        assert '"interrupted": true' in response.json()["info"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
