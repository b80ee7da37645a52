"""FireWorks deployment of definet flows: launchpad, GPU and CPU workers, SLURM queue templates, submission."""
