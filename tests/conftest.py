"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The library trains and predicts with one torch thread; unit tests that call its
    # functions directly do the same, so that a busy second core cannot slow them down.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
