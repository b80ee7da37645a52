import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from definet_core.dataset import MaterialSet, find_material_sets, load_dataset, load_split, with_min_atoms
from definet_core.errors import DefiNetInputError
from definet_core.markers import Marker
from tests.conftest import shared_data_or_skip


def test_reader_builds_targets_and_markers(dataset_root, cache_dir):
    sets = load_dataset([dataset_root], "train", 4.0, 12, progress=False)
    assert list(sets) == ["MoS2"]
    graphs = sets["MoS2"]
    assert len(graphs) == 12
    for graph in graphs:
        assert graph.y.shape == graph.pos.shape
        vacancy = graph.marker == Marker.VACANCY
        assert vacancy.sum() >= 1
        assert np.allclose(graph.y[vacancy], graph.pos[vacancy])
        assert (graph.y - graph.pos).norm(dim=-1).max() < 0.2


def test_cache_is_reused_and_invalidated_by_a_changed_source(tmp_path, cache_dir):
    from tests.conftest import write_dataset

    material = find_material_sets(write_dataset(tmp_path, {"train": 3}).parent)[0]
    load_split(material, "train", 4.0, 12, progress=False)
    files = sorted(cache_dir.glob("*.pt"))
    assert len(files) == 1
    load_split(material, "train", 4.0, 12, progress=False)
    assert sorted(cache_dir.glob("*.pt")) == files
    relaxed = material.pair_paths("MoS2_train_0")[1]
    relaxed.write_text(relaxed.read_text().replace("generated using pymatgen", "edited"))
    load_split(material, "train", 4.0, 12, progress=False)
    assert len(list(cache_dir.glob("*.pt"))) == 2


def test_a_view_of_symlinks_shares_the_cache_of_its_sources(tmp_path, cache_dir):
    from tests.conftest import write_dataset

    source = find_material_sets(write_dataset(tmp_path / "data", {"train": 3}).parent)[0]
    view = tmp_path / "view" / source.name
    view.mkdir(parents=True)
    for path in source.root.iterdir():
        (view / path.name).symlink_to(path)
    load_split(source, "train", 4.0, 12, progress=False)
    files = sorted(cache_dir.glob("*.pt"))
    graphs = load_split(MaterialSet(view), "train", 4.0, 12, progress=False)
    assert sorted(cache_dir.glob("*.pt")) == files and len(graphs) == 3


def test_a_copy_of_the_data_with_new_modification_times_keeps_its_cache(tmp_path, cache_dir):
    """../shared is provisioned afresh each session: same files, new paths and mtimes, no rebuilt graphs."""
    import shutil

    from tests.conftest import write_dataset

    source = find_material_sets(write_dataset(tmp_path / "data", {"train": 3}).parent)[0]
    load_split(source, "train", 4.0, 12, progress=False)
    files = sorted(cache_dir.glob("*.pt"))
    copy = tmp_path / "again" / source.name
    shutil.copytree(source.root, copy, copy_function=shutil.copy)  # contents only: new mtimes
    assert copy.joinpath("train.csv").stat().st_mtime_ns != source.root.joinpath("train.csv").stat().st_mtime_ns
    graphs = load_split(MaterialSet(copy), "train", 4.0, 12, progress=False)
    assert sorted(cache_dir.glob("*.pt")) == files and len(graphs) == 3


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DefiNetInputError, match="data directory not found"):
        find_material_sets(tmp_path / "nope")


def test_relaxed_positions_across_the_boundary_map_to_the_nearest_image(tmp_path, cache_dir):
    from tests.conftest import write_dataset

    material = find_material_sets(write_dataset(tmp_path, {"train": 1}).parent)[0]
    relaxed = material.pair_paths("MoS2_train_0")[1]
    from definet_core.io import read_structure

    moved = read_structure(relaxed)
    for i in range(len(moved)):  # express every relaxed atom one cell over
        moved.translate_sites([i], [1.0, -1.0, 0.0], to_unit_cell=False)
    moved.to(filename=str(relaxed))
    graph = load_split(material, "train", 4.0, 12, progress=False)[0]
    assert (graph.y - graph.pos).norm(dim=-1).max() < 0.2


def test_reader_on_shared_dft_data(tmp_path):
    root = shared_data_or_skip()
    from definet_core.dataset import MaterialSet, load_pair
    from definet_core.io import read_structure

    for name in ("high_density/MoS2", "high_density/hBN", "high_density/BP", "low_density/WSe2"):
        material = MaterialSet(root / name)
        host = read_structure(material.unit_cell_path)
        for atoms_id in material.split_ids("val")[:3]:
            graph = load_pair(material, atoms_id, host, 5.0, 24)
            unrelaxed = read_structure(material.pair_paths(atoms_id)[0])
            assert int((graph.marker != Marker.VACANCY).sum()) == len(unrelaxed)
            assert (graph.y - graph.pos).norm(dim=-1).max() < 3.0  # BP moves up to ~2 A
            assert int((graph.marker == Marker.INTERSTITIAL).sum()) == 0


def _cell(atoms: int, vacancies: int) -> Data:
    return Data(marker=torch.tensor([int(Marker.PRISTINE)] * atoms + [int(Marker.VACANCY)] * vacancies))


def test_min_atoms_keeps_dilute_cells_counting_atoms_not_vacancy_nodes_and_drops_emptied_materials():
    sets = {"tiny": [_cell(7, 1)], "mixed": [_cell(15, 1), _cell(16, 1), _cell(63, 1)]}
    kept = with_min_atoms(sets, 16, "train")
    assert list(kept) == ["mixed"] and [int((g.marker != Marker.VACANCY).sum()) for g in kept["mixed"]] == [16, 63]
    assert with_min_atoms(sets, 0, "train") is sets
    with pytest.raises(DefiNetInputError, match="--min-atoms 100: no val structure"):
        with_min_atoms(sets, 100, "val")
