import pytest


@pytest.fixture(scope="module")
def studio_demo(tmp_path_factory):
    from loradeck.services.studio import Studio

    home = tmp_path_factory.mktemp("home")
    return Studio(home=home)
