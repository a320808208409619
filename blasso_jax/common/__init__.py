"""What every layer shares, importing no other part of blasso_jax: atomic file writes (`files`), each random
consumer's key (`rng`), the device mesh, layouts and multi-process helpers (`parallel`), the log and progress line
(`progress`), SIGINT/SIGTERM stops (`stopping`) and the paper's facts: its datasets and tables (`paper`)."""
