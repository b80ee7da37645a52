"""The shipped FireWorks files load and route as documented."""

from fireworks import FWorker
from fireworks.utilities.fw_serializers import load_object_from_file

from launchpad.deploy import TEMPLATES, worker


def test_worker_files_carry_the_categories_the_flow_uses():
    gpu = FWorker.from_file(str(TEMPLATES / "my_fworker_gpu.yaml"))
    cpu = FWorker.from_file(str(TEMPLATES / "my_fworker_cpu.yaml"))
    assert gpu.category == worker("gpu").category == "gpu"
    assert cpu.category == worker("cpu").category == "cpu"
    assert gpu.query["spec._category"] == "gpu" and cpu.query["spec._category"] == "cpu"


def test_queue_adapters_are_slurm_adapters_that_launch_the_matching_worker():
    for kind in ("gpu", "cpu"):
        adapter = load_object_from_file(str(TEMPLATES / f"my_qadapter_{kind}.yaml"))
        assert adapter.q_type == "SLURM"
        assert f"my_fworker_{kind}.yaml" in adapter["rocket_launch"]
