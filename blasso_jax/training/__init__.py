"""One run and sweeps of runs: the compiled step and epoch (`step`), the orchestration (`train`), the run directory
and checkpoints (`rundir`, `checkpoints`), epoch records and their writers (`records`, `tensorboard`), the summary
(`summary`), sweeps over cells and seeds (`sweep`) and the speed benchmark (`benchmark`). May import every layer
below it."""
