import pytest

from tests.prompt.tokenizers import clip_tokenizer


@pytest.fixture(scope="session")
def clip_l(tmp_path_factory):
    """CLIP-L style: pads with EOS."""
    return clip_tokenizer(tmp_path_factory.mktemp("clip_l"))


@pytest.fixture(scope="session")
def open_clip(tmp_path_factory):
    """OpenCLIP style (SD2, SDXL TE2): pads with "!" (id 0)."""
    return clip_tokenizer(tmp_path_factory.mktemp("open_clip"), pad_token="!")
