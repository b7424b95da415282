import pytest

from numbench.tasks import load_task


@pytest.fixture(scope="session")
def multi():
    return load_task("multi_object")


def pytest_configure(config):
    # Tiny models gain nothing from threads, and OpenMP threads spin-waiting against another
    # process on a 2-core machine slow everything down badly.
    import torch

    torch.set_num_threads(1)
