"""The Train tab's worker: trains through the studio, reports live loss, shows errors as sentences."""

from __future__ import annotations

from loradeck.services.studio import Studio
from loradeck.train import TrainConfig
from loradeck.ui.train_tab import Training
from tests.train.conftest import draw_pictures


def test_training_reports_loss_and_lands_in_the_library(tmp_path):
    studio = Studio(home=tmp_path / "home")
    data = tmp_path / "data"
    draw_pictures(data / "1_shapes", 4)
    config = TrainConfig(data=data, name="uitrained", trigger="uistyle", rank=2, alpha=1, lr=1e-3, steps=3,
                         batch_size=2, device="cpu")  # fmt: skip
    training = Training(studio, config).start()
    assert training.done.wait(300)
    assert training.error is None, training.error
    assert len(training.losses) == 3 and training.fraction == 1.0
    assert training.describe().startswith("step 3/3 · loss ")
    assert studio.library.resolve_lora("uitrained").trigger_words == ["uistyle"]


def test_bad_data_is_one_sentence(tmp_path):
    studio = Studio(home=tmp_path / "home")
    (tmp_path / "empty").mkdir()
    training = Training(studio, TrainConfig(data=tmp_path / "empty", name="x", steps=2, device="cpu")).start()
    assert training.done.wait(120)
    assert training.error and "empty" in training.error and "\n" not in training.error.strip()
