"""System metrics of the job (CPU, memory, disk, GPU), sampled beside its training metrics.

``sampler`` runs a thread that reads the sources (``process``, ``cgroup``, ``gpu``, the disk)
into plain readings; ``system_families`` turns the last good reading into gangplank_system_* metrics.
"""
