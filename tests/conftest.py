import os

import pytest
import torch

# Keep torch to one thread per process in tests: CI machines have 2 cores and
# the notebook tests start kernels alongside the test process.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)
