"""Shared test configuration: one thread, deterministic seeds, data directory."""

import os
import pathlib

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REPO = pathlib.Path(__file__).resolve().parents[1]
#: benchmark data: $GFN_DATA_DIR when set, else the copy shipped in the package (envs/data)
DATA_DIR = pathlib.Path(os.environ.get("GFN_DATA_DIR") or REPO / "envs" / "data")


@pytest.fixture
def data_dir():
    """The data root ($GFN_DATA_DIR or the packaged copy); skips the test when it is absent."""
    if not DATA_DIR.exists():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def count_reward_calls():
    """``watch(env) -> calls``: from then on ``calls`` gets the batch size of every ``env.log_reward`` call."""
    def watch(env):
        calls, orig = [], env.log_reward

        def counted(states):
            calls.append(states.shape[0])
            return orig(states)
        env.log_reward = counted
        return calls
    return watch
