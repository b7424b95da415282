import pytest

from numbench.tasks import load_task


@pytest.fixture(scope="session")
def multi():
    return load_task("multi_object")
