"""definet submit puts the flow on a real LaunchPad (SecantusDB) with the documented routing."""

from atomate2.vasp.jobs.core import RelaxMaker
from jobflow import Maker

from launchpad.deploy import connect
from workflows.cli.main import main


def test_submit_adds_the_flow_with_vasp_and_gpu_routing(mongo_uri, database_name, capsys):
    assert main(["submit", "--host", "MoS2-1L", "--defects", "dense", "--supercell", "3", "3", "1",
                 "--vacancies", "S=1", "--n-configs", "1", "--db-uri", mongo_uri, "--database", database_name]) == 0
    assert "submitted 3 Fireworks" in capsys.readouterr().out
    launchpad = connect(mongo_uri, name=database_name)
    fireworks = [launchpad.get_fw_by_id(i) for i in launchpad.get_fw_ids()]
    assert {fw.name: fw.spec["_category"] for fw in fireworks} == {
        "enumerate defects": "cpu", "definet predict": "gpu", "relax and record": "cpu"}
    fanout = next(fw for fw in fireworks if fw.name == "relax and record")
    job = fanout.tasks[0]["job"]
    (maker,) = [arg for arg in job.function_args if isinstance(arg, Maker)]
    assert isinstance(maker, RelaxMaker)  # atomate2's VASP relaxation by default, with the defect settings
    incar = maker.input_set_generator.user_incar_settings
    assert incar["ISIF"] == 2 and incar["EDIFFG"] == -0.02 and incar["ISPIN"] == 2


def test_submit_without_a_lasting_server_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEFINET_MONGO_URI", raising=False)
    assert main(["submit", "--host", "MoS2-1L", "--data-dir", str(tmp_path)]) == 2
    assert "definet db start" in capsys.readouterr().err
