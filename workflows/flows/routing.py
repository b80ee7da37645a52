"""Which FireWorks workers run which job: categories carried in jobflow's ``manager_config``.

Only the DefiNet prediction job carries ``GPU_CATEGORY``; every other job, including those created
at run time, carries ``CPU_CATEGORY``. GPU workers pull only the first, CPU workers only the second.
"""

from __future__ import annotations

from jobflow import Flow, Job

GPU_CATEGORY = "gpu"
CPU_CATEGORY = "cpu"


def routed(flow: Flow, predict: Job) -> Flow:
    """``flow`` with every job on CPU workers except the prediction job, which goes to GPU workers.

    Categories are set on the flow, not inside the makers, so a user's own makers are routed the same way;
    jobs that the fan-out creates at run time inherit its CPU category.
    """
    flow.update_config({"manager_config": {"_category": CPU_CATEGORY}})
    predict.update_config({"manager_config": {"_category": GPU_CATEGORY}})
    return flow
