"""The entry points (`experiments.*`) run in the test's own process, as their command lines would."""

from absl import flags

from experiments import table2

# The smoke preset on 8x8 images, for tests of what the entry points train, keep and write rather than of CIFAR's
# shape: a compile and an epoch cost about half of the 32x32 preset's.
SMALL_IMAGES = (8, 8, 3)
SMOKE = ["--config=smoke", f"--synthetic_shape={','.join(map(str, SMALL_IMAGES))}"]


def parse(argv, prog="prog"):
    """Sets the flags as `prog *argv` would, every other flag back at its default."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS([prog, *argv])


def run(module, argv):
    """`python -m <module> *argv`, in this process."""
    prog = module.__name__.rsplit(".", 1)[-1]
    parse(argv, prog)
    module.main([prog])


def run_table2(argv):
    """`python -m experiments.table2 *argv`, in this process."""
    run(table2, argv)
