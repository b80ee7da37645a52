import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from definet_core.io import save_atomically


def _save_repeatedly(path: str, value: int) -> None:
    for _ in range(25):
        save_atomically(torch.full((1000,), value), Path(path))


def test_two_processes_writing_the_same_file_both_succeed_and_leave_a_whole_file(tmp_path):
    target = tmp_path / "graphs.pt"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        for done in [pool.submit(_save_repeatedly, str(target), value) for value in (1, 2)]:
            done.result()
    saved = torch.load(target)
    assert saved.shape == (1000,) and saved.unique().numel() == 1 and int(saved[0]) in (1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["graphs.pt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.pt"
    save_atomically({"step": 1}, target)
    with pytest.raises((AttributeError, pickle.PicklingError)):
        save_atomically({"step": 2, "unpicklable": lambda: None}, target)
    assert torch.load(target) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
