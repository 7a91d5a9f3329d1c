"""The small readers validate before they trust (issue 18): sidecars, styles.csv, PNG metadata, training TOML and
captions. Each hostile input gives one sentence naming the file (or a warning), never a Python exception."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from loradeck.errors import FormatError, InvalidRequest
from loradeck.formats import json_safe
from loradeck.formats.sidecars import read_sidecars
from loradeck.prompt import styles
from loradeck.prompt.pnginfo import read_infotext
from loradeck.train.config import TrainConfig
from loradeck.train.data_scan import read_caption, subsets_from_toml


@pytest.mark.parametrize(
    "text, words",
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"a": ' + "[" * 100 + "]" * 100 + "}", "nested too deeply"),
        ('{"w": NaN}', "NaN"),
        ('{"w": -Infinity}', "-Infinity"),
        ('{"n": ' + "9" * 5000 + "}", "cannot be parsed"),
        ("{'a': 1}", "not valid JSON"),
    ],
)
def test_bounded_json_refuses_with_one_sentence(text, words):
    with pytest.raises(FormatError) as err:
        json_safe.loads(text, "x.json", "sidecar")
    assert str(err.value).startswith("x.json: sidecar") and words in str(err.value) and "\n" not in str(err.value)


def test_depth_is_measured_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert json_safe.depth_of(deep) == 100_001
    assert json_safe.depth_of({"a": [1, {"b": []}]}) == 4 and json_safe.depth_of(5) == 0


def test_hostile_sidecars_are_warnings_and_values_stay_finite(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"")
    (tmp_path / "m.json").write_text('{"preferred weight": 1e999, "activation text": "[/foo]"}')
    (tmp_path / "m.civitai.info").write_text('{"trainedWords": ' + "[" * 3000 + "]" * 3000 + "}")
    side = read_sidecars(model)
    assert side.user is not None and side.user.preferred_weight == 0.0  # inf is not a weight
    assert side.user.activation_text == "[/foo]"
    assert side.civitai is None and len(side.errors) == 1 and "m.civitai.info" in side.errors[0]
    json.dumps(side.user.to_dict(), allow_nan=False)


def test_styles_file_over_the_cap_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt\n" + "a,b\n" * 100)
    monkeypatch.setattr(styles, "MAX_STYLES_BYTES", 100)
    with pytest.raises(FormatError, match="styles.csv: is larger than"):
        styles.read_styles(path)


def test_styles_with_nul_bytes_or_a_huge_field_is_one_sentence(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt\na,"' + "x" * 200_000 + '"\n')
    with pytest.raises(FormatError, match="styles.csv: cannot be read as a styles CSV"):
        styles.read_styles(path)


def test_decompression_bomb_png_is_a_format_error(tmp_path):
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")  # 400 Mpx: past Pillow's bomb limit, 60 KB on disk
    path = tmp_path / "bomb.png"
    path.write_bytes(buf.getvalue())
    with pytest.raises(FormatError) as err:
        read_infotext(path)
    assert "bomb.png" in str(err.value) and "DecompressionBomb" in str(err.value)


@pytest.mark.parametrize(
    "toml, words",
    [
        ("general = 5\n", "[general] is not a table"),
        ('datasets = "x"\n', "datasets is not a list"),
        ("[[datasets]]\nsubsets = 3\n", "subsets is not a list"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = 7\n", "image_dir is not a string"),
        ('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "a"\nnum_repeats = "many"\n', "num_repeats"),
        ("[general]\nresolution = []\n[[datasets]]\n", "resolution is not a number"),
        ("x = [" * 2000 + "]" * 2000 + "\n", "is not valid TOML"),
        ("\xff\xfe not utf8", "is not valid TOML"),
    ],
)
def test_hostile_dataset_toml_is_one_problem(tmp_path, toml, words):
    path = tmp_path / "dataset.toml"
    path.write_bytes(toml.encode("latin-1") if toml.startswith("\xff") else toml.encode())
    _subsets, _options, problems = subsets_from_toml(path)
    assert problems and words in str(problems[0]) and "dataset.toml" in str(problems[0]), problems


@pytest.mark.parametrize(
    "toml, words",
    [
        ("learning_rate = nan\n", "must be a finite number"),
        ('max_train_steps = "many"\n', "cannot be 'many'"),
        ("max_train_steps = inf\n", "cannot be"),
        ("train = 3\n", "is not a table"),
    ],
)
def test_hostile_training_config_is_one_sentence(tmp_path, toml, words):
    path = tmp_path / "train.toml"
    path.write_text(toml)
    with pytest.raises(InvalidRequest) as err:
        TrainConfig.from_toml(path)
    assert "train.toml" in str(err.value) and words in str(err.value), str(err.value)


def test_caption_reads_only_the_first_line_of_a_huge_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"a cat, sitting\n" + b"x" * 5_000_000)
    assert read_caption(path) == "a cat, sitting"


def test_pickles_over_the_cap_or_hostile_are_one_sentence(tmp_path):
    import pickle

    import torch

    from loradeck.formats.pickle_safe import load_pickle_state_dict

    path = tmp_path / "lora.pt"
    torch.save({"lora_unet_x.alpha": torch.tensor(1.0)}, path)
    with pytest.raises(FormatError, match="more than the 10 bytes a pickle may be"):
        load_pickle_state_dict(path, max_bytes=10)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(print))  # a global: refused by weights_only, never called
    with pytest.raises(FormatError, match="evil.pt: is not a safely loadable PyTorch checkpoint"):
        load_pickle_state_dict(evil)
