"""Data scanning (kohya folders, captions, TOML), bad files reported by path before training, buckets, captions."""

from __future__ import annotations

import random

import pytest

from loradeck.train import DatasetError, TrainConfig, train_lora
from loradeck.train.buckets import fit, make_buckets, pick_bucket
from loradeck.train.captions import process_caption, with_trigger
from loradeck.train.data_scan import scan_dataset

from .conftest import draw_pictures


def test_bad_data_is_reported_by_file_before_the_model_loads(tmp_path):
    data = tmp_path / "data"
    draw_pictures(data / "4_good", 2)
    (data / "4_good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (data / "4_good" / "orphan.txt").write_text("a caption with no picture")
    draw_pictures(data / "4_good", 1, seed=5)  # pic0 again, then blank its caption
    (data / "4_good" / "pic0.txt").write_text("")
    (data / "2_empty").mkdir()
    (data / "2_good_caption").mkdir()
    draw_pictures(data / "2_good_caption", 1, caption_ext=".caption")
    cfg = TrainConfig(data=data, base=str(tmp_path / "no-such-model"), name="x", output_dir=tmp_path / "o",
                      lora_dir=tmp_path / "l")  # fmt: skip
    with pytest.raises(DatasetError) as err:  # not ModelLoadError: the data is checked first
        train_lora(cfg)
    problems = {p.path.name: p.reason for p in err.value.problems}
    assert set(problems) == {"broken.png", "orphan.txt", "pic0.txt", "2_empty"}
    assert "picture" in problems["broken.png"] and "without a picture" in problems["orphan.txt"]
    assert "empty" in problems["pic0.txt"] and "no pictures" in problems["2_empty"]
    assert str(data / "4_good" / "broken.png") in str(err.value)


def test_kohya_folders_repeats_and_class_tokens(tmp_path):
    data = tmp_path / "data"
    draw_pictures(data / "10_my_style", 3)
    (data / "10_my_style" / "pic1.txt").unlink()  # falls back to the class tokens
    draw_pictures(data / "1_other", 2, caption_ext=".caption")
    (data / "notes").mkdir()  # no repeat count: skipped with a warning
    spec = scan_dataset(data, None)
    assert spec.num_train_images == 3 * 10 + 2
    captions = {i.image.name: i.caption for i in spec.items if i.image.parent.name == "10_my_style"}
    assert captions["pic1.png"] == "my style"
    assert any("notes" in w for w in spec.warnings)
    assert spec.dataset_dirs() == {"10_my_style": {"n_repeats": 10, "img_count": 3},
                                   "1_other": {"n_repeats": 1, "img_count": 2}}  # fmt: skip


def test_dataset_config_toml(tmp_path):
    draw_pictures(tmp_path / "imgs", 2)
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        "[general]\nshuffle_caption = true\nkeep_tokens = 1\n\n[[datasets]]\nresolution = [64, 64]\nbatch_size = 2\n"
        '\n  [[datasets.subsets]]\n  image_dir = "imgs"\n  num_repeats = 5\n  class_tokens = "sks"\n  keep_tokens = 2\n'
    )
    spec = scan_dataset(None, toml)
    assert spec.options == {"resolution": 64, "batch_size": 2}
    (sub,) = spec.subsets
    assert sub.image_dir == tmp_path / "imgs" and sub.num_repeats == 5 and sub.class_tokens == "sks"
    assert sub.shuffle_caption is True and sub.keep_tokens == 2  # subset beats general
    assert spec.num_train_images == 10


def test_bucket_list_matches_kohya_worked_example():
    got = make_buckets(512, 256, 1024, 64)
    example = [(256, 1024), (320, 768), (384, 640), (448, 576), (512, 512), (576, 448), (640, 384), (704, 320),
               (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256)]  # fmt: skip
    expected = set(example) | {(h, w) for w, h in example}
    assert set(got) == expected
    assert pick_bucket(1000, 600, got) == (640, 384)  # ar 1.667 is nearest to 640/384


def test_fit_covers_and_centre_crops():
    from PIL import Image

    img = Image.new("RGB", (100, 50))
    img.paste((255, 0, 0), (0, 0, 15, 50))  # a red left strip, cropped away by the centre crop
    out = fit(img, (32, 32))
    assert out.size == (32, 32)
    assert out.getpixel((0, 16)) == (0, 0, 0)


def test_caption_trigger_and_shuffle_keep_tokens():
    assert with_trigger("a red circle", "stripy") == "stripy, a red circle"
    assert with_trigger("a stripy red circle", "stripy") == "a stripy red circle"
    rng = random.Random(0)
    tags = "a, b, c, d, e, f"
    seen = set()
    for _ in range(30):
        out = process_caption(tags, rng, shuffle=True, keep_tokens=2, trigger="sks")
        parts = out.split(", ")
        assert parts[:3] == ["sks", "a", "b"] and sorted(parts[3:]) == ["c", "d", "e", "f"]
        seen.add(out)
    assert len(seen) > 5  # the rest really is shuffled


def test_config_toml_and_kohya_aliases(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('network_dim = 32\nnetwork_alpha = 16\nlearning_rate = 5e-4\nmax_train_steps = 99\nname = "x"\n'
                    'sample_prompts = "a cat --d 3"\n')  # fmt: skip
    cfg = TrainConfig.from_toml(path, rank=8)
    assert (cfg.rank, cfg.alpha, cfg.lr, cfg.steps, cfg.name) == (8, 16, 5e-4, 99, "x")
    assert cfg.sample_prompts == ["a cat --d 3"]
    path.write_text("bogus_key = 1\n")
    with pytest.raises(Exception, match="bogus_key"):
        TrainConfig.from_toml(path)


def test_missing_optional_optimizer_is_one_clear_sentence():
    from loradeck.errors import InvalidRequest
    from loradeck.train.optim import optimizer_class

    for name, package in (("adamw8bit", "bitsandbytes"), ("prodigy", "prodigyopt"), ("lion", "lion-pytorch")):
        try:
            optimizer_class(name)
        except InvalidRequest as exc:
            assert package in str(exc) and "--optimizer adamw" in str(exc)


def test_regularisation_pictures_are_cycled_and_never_get_the_trigger(tmp_path):
    from loradeck.train.dataset import BucketSettings, TrainDataset

    draw_pictures(tmp_path / "data" / "3_style", 2)
    draw_pictures(tmp_path / "reg" / "1_plain", 5, seed=9)
    spec = scan_dataset(tmp_path / "data", None, reg_data=tmp_path / "reg")
    assert spec.num_train_images == 6 and spec.num_reg_images == 6
    assert spec.dataset_dirs(reg=True) == {"1_plain": {"n_repeats": 1, "img_count": 5}}
    ds = TrainDataset(spec, BucketSettings.for_resolution(32), 3, seed=1, trigger="stripy")
    for epoch in range(3):
        flat = [i for b in ds.epoch_batches(epoch) for i in b]
        reg = [i for i in flat if spec.items[i].is_reg]
        assert len(flat) == 12 and len(reg) == 6  # as many reg as training pictures each epoch
    captions = [c for s in range(4) for c in ds.batch(s, encode=lambda px: px).captions]
    reg_caps = {i.caption for i in spec.items if i.is_reg}
    assert all(c.startswith("stripy, ") for c in captions if c not in reg_caps)
    assert any(c in reg_caps for c in captions)  # reg captions stay as written


def test_noise_draw_and_min_snr_weights_follow_the_formulas():
    import torch
    from diffusers import DDPMScheduler

    from loradeck.train.noise import min_snr_weights, noised

    sched = DDPMScheduler(num_train_timesteps=1000)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = noised(x, sched, seed=7, step=3, noise_offset=0.1)
    b = noised(x, sched, seed=7, step=3, noise_offset=0.1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # a pure function of (seed, step)
    noisy, target, t = a
    ac = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(noisy, ac.sqrt() * x + (1 - ac).sqrt() * target, atol=1e-5)  # target is the noise used
    snr = torch.tensor([0.5, 5.0, 50.0])
    assert torch.allclose(min_snr_weights(snr, 5.0), torch.tensor([1.0, 1.0, 0.1]))
    assert torch.allclose(min_snr_weights(snr, 5.0, "v_prediction"), torch.tensor([0.5 / 1.5, 5 / 6, 5 / 51]))


def test_caption_tag_dropout_keeps_trigger_and_kept_tags_and_drops_at_the_rate():
    rng = random.Random(3)
    tags = ", ".join(f"t{i}" for i in range(40))
    dropped = 0
    for _ in range(200):
        parts = process_caption(tags, rng, shuffle=False, keep_tokens=2, trigger="sks", tag_dropout=0.25).split(", ")
        assert parts[:3] == ["sks", "t0", "t1"]  # the trigger and the kept tags never go
        assert parts[3:] == [t for t in (f"t{i}" for i in range(2, 40)) if t in parts[3:]]  # order kept (no shuffle)
        dropped += 38 - len(parts[3:])
    assert abs(dropped / (200 * 38) - 0.25) < 0.02  # ≈ the rate over 7,600 draws


def test_whole_caption_dropout_by_rate_and_by_epoch(tmp_path):
    from loradeck.train.captions import drops_caption
    from loradeck.train.dataset import BucketSettings, TrainDataset

    rng = random.Random(0)
    share = sum(drops_caption(rng, 1, 0.3, 0) for _ in range(5000)) / 5000
    assert abs(share - 0.3) < 0.02
    assert [drops_caption(random.Random(0), e, 0.0, 3) for e in range(1, 7)] == [False, False, True] * 2
    draw_pictures(tmp_path / "data" / "2_style", 3)
    spec = scan_dataset(tmp_path / "data", None)
    ds = TrainDataset(
        spec, BucketSettings.for_resolution(32), 2, seed=1, trigger="stripy", caption_dropout=(0.0, 2, 0.0)
    )
    per_epoch = ds.batches_per_epoch
    first = [c for s in range(per_epoch) for c in ds.batch(s, encode=lambda px: px).captions]
    second = [c for s in range(per_epoch, 2 * per_epoch) for c in ds.batch(s, encode=lambda px: px).captions]
    assert all(c.startswith("stripy") for c in first) and second == [""] * len(second)  # epoch 2 of 2: all dropped
