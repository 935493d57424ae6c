"""Fixtures shared by the repository's own tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: small networks gain nothing from more, and two spin when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
