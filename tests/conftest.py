import pytest
import torch

# The tests run tiny networks: one intra-op thread costs little on an idle machine and
# avoids the many-fold slowdown of oversubscribed threads on a busy or shared one.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
