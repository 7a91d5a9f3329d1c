"""Name resolution as A1111 (stems, aliases, forbidden duplicates, case) plus subfolder names and did-you-mean."""

from __future__ import annotations

import hashlib

import pytest
from library_helpers import CountingHasher, write_lora

from loradeck.errors import LoraNotFound


def test_stem_and_alias_resolve_case_sensitively(dirs, make_library):
    lora, _, _ = dirs
    write_lora(lora / "ghibli_v3.safetensors", {"ss_output_name": "ghibli"})
    lib = make_library()
    e = lib.resolve_lora("ghibli")
    assert e is lib.resolve_lora("ghibli_v3")
    assert e.prompt_name == "ghibli" and not e.alias_forbidden
    with pytest.raises(LoraNotFound, match=r"^LoRA not found: Ghibli \(did you mean ghibli\?\)$"):
        lib.resolve_lora("Ghibli")


def test_duplicated_alias_is_forbidden_and_resolves_by_stem_only(dirs, make_library):
    lora, _, _ = dirs
    write_lora(lora / "a.safetensors", {"ss_output_name": "style"}, seed=1)
    write_lora(lora / "b.safetensors", {"ss_output_name": "style"}, seed=2)
    write_lora(lora / "c.safetensors", {"ss_output_name": "a"}, seed=3)  # alias = another file's stem
    lib = make_library()
    a, b, c = (lib.resolve_lora(n) for n in "abc")
    assert (a.name, b.name, c.name) == ("a", "b", "c")  # "a" is forbidden → the stem wins, not c's alias
    assert a.alias_forbidden and b.alias_forbidden and c.alias_forbidden
    assert [e.prompt_name for e in (a, b, c)] == ["a", "b", "c"]
    with pytest.raises(LoraNotFound, match="LoRA not found: style"):
        lib.resolve_lora("style")  # forbidden alias, and no file has that stem


def test_alias_none_is_always_forbidden(dirs, make_library):
    write_lora(dirs[0] / "x.safetensors", {"ss_output_name": "none"})
    lib = make_library()
    with pytest.raises(LoraNotFound):
        lib.resolve_lora("none")
    assert lib.resolve_lora("x").prompt_name == "x"


def test_duplicate_stems_later_wins_and_subfolder_names_reach_both(dirs, make_library):
    lora, _, _ = dirs
    first = write_lora(lora / "chars" / "hero.safetensors", seed=1)
    second = write_lora(lora / "styles" / "hero.safetensors", seed=2)
    lib = make_library()
    assert lib.resolve_lora("hero").path == second  # A1111: later in natural order wins
    assert lib.resolve_lora("chars/hero").path == first
    assert lib.resolve_lora("styles/hero.safetensors").path == second
    assert lib.resolve_lora("chars\\hero").path == first
    shadowed = lib.resolve_lora("chars/hero")
    assert any("chars/hero" in w for w in shadowed.warnings)
    assert len(lib.loras()) == 2


def test_unknown_name_rescans_once_then_suggests(dirs, make_library):
    lora, _, _ = dirs
    write_lora(lora / "watercolor.safetensors")
    hasher = CountingHasher()
    lib = make_library(hasher)
    lib.loras()
    late = write_lora(lora / "sub" / "late.safetensors", seed=5)  # added after the first scan
    assert lib.resolve_lora("late").path == late
    assert lib.resolve_lora("sub/late").path == late
    with pytest.raises(LoraNotFound, match=r"did you mean watercolor\?"):
        lib.resolve_lora("watercolour")
    with pytest.raises(LoraNotFound, match=r"^LoRA not found: zzz \(no LoRA"):
        lib.resolve_lora("zzz")
    assert hasher.calls.count(late) == 1  # the rescans after a miss re-hash nothing


def test_resolve_many_keeps_going(dirs, make_library):
    write_lora(dirs[0] / "a.safetensors")
    found, missing = make_library().resolve_loras(["a", "nope", "a"])
    assert list(found) == ["a"] and len(missing) == 1 and "nope" in str(missing[0])


def test_by_hash(dirs, make_library):
    path = write_lora(dirs[0] / "a.safetensors")
    lib = make_library()
    e = lib.resolve_lora("a")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert lib.by_hash(e.hashes.autov3) is e
    assert lib.by_hash(e.hashes.autov3.upper()) is e  # Civitai prints upper case
    assert lib.by_hash(sha[:10]) is e
    assert lib.by_hash(sha) is e
    assert lib.by_hash(hashlib.sha256(b"").hexdigest()[:12]) is None
    assert lib.by_hash("0123456789ab") is None


def test_bundled_folder_is_listed_and_the_users_file_of_the_same_name_wins(dirs, tmp_path):
    from loradeck.library import Library

    lora, ckpt, cache = dirs
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    write_lora(bundled / "stripy.safetensors", seed=1)
    write_lora(bundled / "dotty.safetensors", seed=2)
    mine = write_lora(lora / "stripy.safetensors", seed=3)
    lib = Library(lora, ckpt, cache, extra_lora_dirs=[bundled])
    entries = lib.loras()
    assert sorted(e.name for e in entries) == ["dotty", "stripy", "stripy"]  # both listed; the shadowed one warns
    shadowed = next(e for e in entries if e.path == bundled / "stripy.safetensors")
    assert shadowed.warnings
    assert lib.resolve_lora("stripy").path == mine
    assert lib.resolve_lora("dotty").path == bundled / "dotty.safetensors"
