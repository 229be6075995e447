"""Multi-process data-parallel training (`--nproc`): the process group and its collectives."""
