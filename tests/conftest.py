import pytest

from numbench.tasks import load_task


class InProcessBackend:
    """The local backend's contract (``run(fn, jobs)`` yields each job's outcome) without its
    process pool: every job runs here, one after the other."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers

    def run(self, fn, jobs):
        for job in jobs:
            yield fn(job)


@pytest.fixture
def in_process_jobs(monkeypatch):
    """``numbench sweep`` and ``trajectory`` run their jobs in this process: the verbs end to
    end without starting workers (the process pool, Dask and submitit have tests of their
    own)."""
    from numbench.cli import sweep_cmd

    monkeypatch.setattr(sweep_cmd, "LocalBackend", InProcessBackend)


@pytest.fixture(scope="session")
def multi():
    return load_task("multi_object")


@pytest.fixture(scope="session")
def small_gru(multi):
    """A d=32 GRU trained for 400 steps on multi_object (trained once per session: the
    engine tests share it and never change its weights)."""
    from numbench.training import TrainConfig, train

    res = train("gru", multi, 0, config={"d_embed": 16, "d_hidden": 32, "d_readout": 64},
                train_config=TrainConfig(max_steps=400, eval_every=10_000, valid_size=10,
                                         pool_size=4000, lr=3e-3))
    return res.model


def pytest_configure(config):
    # Tiny models gain nothing from threads, and OpenMP threads spin-waiting against another
    # process on a 2-core machine slow everything down badly.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory, multi):
    """A d=8 GRU trained for 30 steps on multi_object, saved as a model file."""
    from numbench.models.files import save_model
    from numbench.training import TrainConfig, train

    res = train("gru", multi, 0, config={"d_embed": 8, "d_hidden": 8, "d_readout": 16},
                train_config=TrainConfig(max_steps=30, eval_every=10_000, valid_size=10,
                                         pool_size=500, lr=3e-3))
    path = tmp_path_factory.mktemp("models") / "tiny_gru.pt"
    save_model(res.model, path, task=multi, seed=0, training=res.summary)
    return path


@pytest.fixture(scope="session")
def tiny_result(tiny_model_file):
    """The tiny model's result document under a tiny engine budget."""
    from evaluate_helpers import tiny_settings
    from numbench.evaluate import evaluate

    return evaluate(tiny_model_file, settings=tiny_settings())


@pytest.fixture
def submitted_result(tmp_path, tiny_result):
    """The tiny result written as submissions/tiny/result.json under tmp_path."""
    from numbench.results import write_json_atomic

    path = tmp_path / "submissions" / "tiny" / "result.json"
    write_json_atomic(path, tiny_result)
    return path


@pytest.fixture
def registry_kept():
    """Whatever a test loads into the alignment registry is gone after it."""
    from numbench.alignments import ALIGNMENTS, registry

    saved = (dict(ALIGNMENTS), dict(registry._SOURCES), dict(registry._loaded_files))
    yield
    for live, old in zip((ALIGNMENTS, registry._SOURCES, registry._loaded_files), saved):
        live.clear()
        live.update(old)
