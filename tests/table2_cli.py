"""Runs `experiments.table2` in the test's own process, as its command line would, for tests of the CLI's runs."""

from absl import flags

from experiments import table2

# The smoke preset on 8x8 images, for tests of the run's bookkeeping rather than of CIFAR's shape: a compile and an
# epoch cost about half of the 32x32 preset's.
SMALL_IMAGES = (8, 8, 3)
SMOKE = ["--config=smoke", f"--synthetic_shape={','.join(map(str, SMALL_IMAGES))}"]


def run_cli(argv):
    """`python -m experiments.table2 *argv`, with every flag reset to its default first."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["table2", *argv])
    table2.main(["table2"])
