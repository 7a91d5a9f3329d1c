"""A library rescan (the UI's LoRA cards, /sdapi/v1/loras) does not wait for a running generation."""

from __future__ import annotations

import threading

from loradeck.services.studio import Studio


def test_rescan_runs_while_a_generation_holds_the_studio(tmp_path):
    studio = Studio(home=tmp_path / "home")
    generating, finish = threading.Event(), threading.Event()

    def generation(_job) -> None:  # stands for a generation: the device queue is busy for its whole length
        generating.set()
        finish.wait(60)

    studio.queue.start()
    job = studio.queue.submit(generation, kind="txt2img")
    generating.wait(10)
    names: list[str] = []
    scan = threading.Thread(target=lambda: names.extend(e.name for e in studio.loras()))
    scan.start()
    scan.join(30)
    finished_while_generating = not scan.is_alive() and not finish.is_set()
    finish.set()
    job.result(60)
    scan.join()
    studio.close()
    assert finished_while_generating
    assert {"stripy", "dotty", "inky"} <= set(names)
