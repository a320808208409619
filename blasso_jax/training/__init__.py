"""One run and sweeps of runs: the compiled step and epoch (`step`), the orchestration (`train`), the run directory
and checkpoints (`rundir`, `checkpoints`), epoch records and their writers (`records`, `tensorboard`), the summary
(`summary`), selection by validation accuracy (`selection`), sweeps over cells and seeds (`sweep`), the speed
benchmark (`benchmark`), and Ingrosso & Goldt's online network and loop (`online`) with its streams of runs, λ
choice and records (`online_streams`). May import every layer below it."""
