"""Sampler and schedule names: labels, aliases, legacy combined names, errors that list the valid names."""

import pytest

from loradeck.errors import InvalidRequest
from loradeck.prompt.samplers import (
    SAMPLER_LABELS,
    SCHEDULE_LABELS,
    effective_schedule,
    resolve_sampler,
    split_legacy_name,
)


def test_tables_hold_the_a1111_labels():
    for label in ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "Heun", "DDIM", "UniPC", "LCM"):
        assert label in SAMPLER_LABELS
    assert SAMPLER_LABELS[0] == "DPM++ 2M"
    assert SCHEDULE_LABELS[0] == "Automatic" and "SGM Uniform" in SCHEDULE_LABELS and len(SCHEDULE_LABELS) == 12


@pytest.mark.parametrize(
    "name, scheduler, expected",
    [
        ("DPM++ 2M", "Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", None, ("DPM++ 2M", "Automatic")),
        ("Euler a", "automatic", ("Euler a", "Automatic")),
        ("k_euler_a", "", ("Euler a", "Automatic")),
        ("k_dpmpp_2m", "karras", ("DPM++ 2M", "Karras")),
        ("euler", "sgm_uniform", ("Euler", "SGM Uniform")),
        ("Euler", "SGMUniform", ("Euler", "SGM Uniform")),
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Karras", "Exponential", ("DPM++ 2M", "Karras")),  # the combined name wins, as in A1111
        ("DPM++ SDE Karras", None, ("DPM++ SDE", "Karras")),
        ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "Exponential")),
        ("DPM++ 3M SDE Karras", None, ("DPM++ 3M SDE", "Karras")),
        ("DPM2 a Karras", None, ("DPM2 a", "Karras")),
        ("LMS Karras", None, ("LMS", "Karras")),
        ("Euler a SGM Uniform", None, ("Euler a", "SGM Uniform")),
        ("DPM++ 2M SDE Heun", None, ("DPM++ 2M SDE Heun", "Automatic")),  # "Heun" is part of the sampler
        ("DDIM", None, ("DDIM", "Automatic")),  # a sampler, though "DDIM" is a schedule label too
        (None, None, ("DPM++ 2M", "Automatic")),
    ],
)
def test_resolve(name, scheduler, expected):
    assert resolve_sampler(name, scheduler) == expected


def test_convert_automatic():
    assert resolve_sampler("DPM++ 2M Karras", None, convert_automatic=True) == ("DPM++ 2M", "Automatic")
    assert resolve_sampler("DPM++ 2M Exponential", None, convert_automatic=True) == ("DPM++ 2M", "Exponential")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(InvalidRequest, match=r"Unknown sampler 'Eulr a'.*DPM\+\+ 2M.*Euler a"):
        resolve_sampler("Eulr a")
    with pytest.raises(InvalidRequest, match=r"Unknown sampler 'Foo Karras'"):
        resolve_sampler("Foo Karras")
    with pytest.raises(InvalidRequest, match=r"Unknown schedule type 'karas'.*Karras"):
        resolve_sampler("Euler", "karas")


def test_split_legacy_name():
    assert split_legacy_name("Euler a") == ("Euler a", None)
    assert split_legacy_name("DPM++ 2M karras") == ("DPM++ 2M", "Karras")
    assert split_legacy_name("Unknown Thing Karras") == ("Unknown Thing", "Karras")  # splitting does not validate


def test_effective_schedule_as_a1111_writes_it():
    assert effective_schedule("DPM++ 2M", "Automatic") == "Karras"
    assert effective_schedule("DPM++ 2M SDE", "Automatic") == "Exponential"
    assert effective_schedule("Euler a", "Automatic") == "Automatic"
    assert effective_schedule("Euler a", "Karras") == "Karras"
