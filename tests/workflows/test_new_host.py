"""The new-host loop of docs/new_host.md on a small metal host with EMT: build a dataset for a host the shipped
model does not know (gold: no bulk training host holds Au), export it, fine-tune on it, and validate with the
fine-tuned checkpoint."""

from __future__ import annotations

import json

import yaml
from pymatgen.core import Lattice, Structure

from definet_core.io import read_structure
from definet_core.predict import Predictor
from workflows.cli.main import main
from workflows.storage.stores import DatasetStore, ValidationStore

RECIPE = {"name": "au-new", "host": "Au.cif", "supercell": [3, 3, 3], "vacancies": ["Au"],
          "substitutions": {"Au": ["Cu"]}, "defects_per_structure": [1, 3], "structures": 8, "seed": 0,
          "splits": {"train": 0.75, "val": 0.25, "test": 0.0}}


def test_build_export_fine_tune_then_the_new_checkpoint_knows_the_host(tmp_path, mongo_uri, database_name,
                                                                        cache_dir, capsys):
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.08), ["Au"], [[0, 0, 0]]).get_primitive_structure().to(
        filename=str(tmp_path / "Au.cif"))
    (tmp_path / "au.yaml").write_text(yaml.safe_dump(RECIPE))
    store = ["--db-uri", mongo_uri, "--database", database_name]

    # 1. the dataset: Au is outside the shipped model's domain, so every structure starts unrelaxed
    assert main(["dataset", "build", "--recipe", str(tmp_path / "au.yaml"), "--relaxer", "emt", "--device", "cpu",
                 *store]) == 0
    with DatasetStore(mongo_uri, database_name) as dataset:
        docs = dataset.query()
    assert {d["start"] for d in docs} == {"unrelaxed"}
    assert all(any("Au never seen in training" in r for r in d["domain_reasons"]) for d in docs)
    # 2. export it, by the name it was built under
    assert main(["dataset", "export", "--recipe", "au-new", "-o", str(tmp_path / "export"), *store]) == 0
    # 3. fine-tune the shipped model's bulk route on it (a few steps)
    checkpoint = tmp_path / "au.pt"
    assert main(["train", "--data", str(tmp_path / "export"), "--init", "definet_bulk_v1", "--out", str(checkpoint),
                 "--epochs", "6", "--batch-size", "2", "--lr", "1e-3", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n"):])  # definet train prints its summary last
    assert summary["best_val_mae"] < 0.01 and summary["checkpoint"] == str(checkpoint)

    # 4. the fine-tuned checkpoint's domain holds the new host: its predictions on the export are in domain
    folder = tmp_path / "export" / "au-new"
    predictor = Predictor(checkpoint, device="cpu")
    assert predictor.domain.dimensionalities == ("bulk",) and 79 in predictor.domain.elements
    cells = [read_structure(path) for path in sorted((folder / "CIF").glob("*_unrelaxed.cif"))]
    verdicts = [p.verdict for p in predictor.predictions(cells, read_structure(folder / "Au.cif"))]
    assert all(v.in_domain for v in verdicts), [v.reasons for v in verdicts if not v.in_domain]

    # 5. a validation run with it starts from its predictions
    assert main(["run", "--host", str(tmp_path / "Au.cif"), "--supercell", "3", "3", "3", "--substitute", "Au=Cu",
                 "--relaxer", "emt", "--device", "cpu", "--checkpoint", str(checkpoint), *store]) == 0
    with ValidationStore(mongo_uri, database_name) as validation:
        docs = validation.query()
    assert len(docs) == 2 and all(d["in_domain"] and d["start"] == "prediction" for d in docs)
    assert all(d["checkpoint"].startswith("au@") for d in docs)
