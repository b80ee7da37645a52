"""FireWorks worker categories carried in jobflow ``manager_config``.

Only the DefiNet prediction job carries ``GPU_CATEGORY``; every other job, including those created
at run time, carries ``CPU_CATEGORY``. GPU workers pull only the first, CPU workers only the second.
"""

GPU_CATEGORY = "gpu"
CPU_CATEGORY = "cpu"
