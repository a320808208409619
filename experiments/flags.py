"""Training flags shared by the entry points: every `TrainConfig` field, applied over a named preset.

A flag left unset keeps the preset's value, so `--config=smoke --epochs=5` is the smoke preset
with five epochs. `--config` names a preset in `blasso_jax.config.PRESETS`.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import typing

from absl import app, flags, logging

from blasso_jax.common import stopping
from blasso_jax.config import train_config as config_lib
from blasso_jax.training import rundir
from blasso_jax.training.checkpoints import CheckpointError
from blasso_jax.training.records import NonFiniteLossError
from blasso_jax.training.rundir import WorkdirError

# Errors a user can act on: entry points print them as one `error: …` line and exit 1.
USER_ERRORS = (ValueError, OSError, WorkdirError, NonFiniteLossError, CheckpointError)


def define_train_flags() -> None:
    """Defines one flag per `TrainConfig` field (default None: the preset's value) plus run control flags.

    Idempotent, so several entry points can share the flags in one process (tests, notebooks).
    """
    if "config" in flags.FLAGS:
        return
    flags.DEFINE_enum("config", "table2", list(config_lib.PRESETS), "preset the other flags override")
    flags.DEFINE_string("workdir", None, "run directory (metrics.jsonl, checkpoints, results.json)")
    flags.DEFINE_bool("resume", False, "continue the run in --workdir from its last checkpoint")
    flags.DEFINE_bool("overwrite", False, "replace an existing run in --workdir")
    flags.DEFINE_integer("stop_after", None, "checkpoint and stop after this epoch (continue later with --resume)")
    flags.DEFINE_bool("distributed", False, "join a multi-process run: jax.distributed.initialize() first (see README)")
    flags.DEFINE_string(
        "coordinator_address", None, "with --distributed: host:port of process 0 (default: auto-detected)"
    )
    flags.DEFINE_integer("num_processes", None, "with --distributed: number of processes (default: auto-detected)")
    flags.DEFINE_integer("process_id", None, "with --distributed: this process's index (default: auto-detected)")
    hints = typing.get_type_hints(config_lib.TrainConfig)
    for field in dataclasses.fields(config_lib.TrainConfig):
        kind = hints[field.name]
        help_text = f"{_field_help(field.name)} [{_preset_values(field.name)}]"
        if field.name == "synthetic_shape":
            flags.DEFINE_list(field.name, None, "synthetic image shape H,W,C")
        elif kind is bool:
            flags.DEFINE_bool(field.name, None, help_text)
        elif kind in (int, int | None):
            flags.DEFINE_integer(field.name, None, help_text)
        elif kind in (float, float | None):
            flags.DEFINE_float(field.name, None, help_text)
        else:
            flags.DEFINE_string(field.name, None, help_text)


def _field_help(name: str) -> str:
    """A config field's help, with the registered models and methods where it names one of them."""
    from blasso_jax.methods import registry as methods
    from blasso_jax.models import networks as models

    valid = {"model": models.MODELS, "method": methods.METHODS}.get(name)
    if name == "momentum":
        defaults = ", ".join(f"{m.name} {m.default_momentum:g}" for m in methods.METHODS.values())
        return f"{config_lib.field_help(name)}: {defaults}"
    return config_lib.field_help(name) + (f": {', '.join(valid)}" if valid else "")


def _preset_values(name: str) -> str:
    """What each preset sets `name` to, for --help: 'table2: 50, cpu_locality: 1, …' (the others keep table2's)."""
    default = getattr(config_lib.TrainConfig(), name)
    values = [f"table2: {default}"]
    values += [f"{preset}: {overrides[name]}" for preset, overrides in config_lib.PRESETS.items() if name in overrides]
    return ", ".join(values)


def set_explicitly(name: str) -> bool:
    """Whether config field `name` was given as a flag or is set by the --config preset (not left at the default)."""
    return flags.FLAGS[name].present or name in config_lib.PRESETS[flags.FLAGS.config]


def define_once(define, name: str, default, help_text: str) -> None:
    """Defines a flag of the entry point that calls this, unless another entry point in this process has (absl flags
    are global; either may override), and lists it in that entry point's `--help` either way."""
    module = _entry_module()
    if name not in flags.FLAGS:
        define(name, default, help_text, allow_override=True, module_name=module)
    else:
        flags.FLAGS.register_key_flag_for_module(module, flags.FLAGS[name])


def _entry_module() -> str:
    """The module (as absl names it: the script path when run as `python -m`) of the first caller outside here."""
    frame = sys._getframe(1)
    while frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "")
    return sys.argv[0] if name == "__main__" else name


_SHARED_FLAGS = {
    "runs": (flags.DEFINE_list, None, "run directories to read (comma-separated)"),
    "seeds": (flags.DEFINE_list, None, "train every run once per seed, e.g. 0,1,2; tables show mean ± std"),
    "datasets": (flags.DEFINE_list, ["cifar10"], "datasets of a sweep (tfds names or local paths)"),
    "out": (flags.DEFINE_string, None, "where to write: a figure path without suffix (.png and .pdf), or a file"),
}


def define_shared_flags(*names: str) -> None:
    """The flags `names` (of `_SHARED_FLAGS`), which several entry points take with one meaning each."""
    for name in names:
        define, default, help_text = _SHARED_FLAGS[name]
        define_once(define, name, default, help_text)


def config_from_flags(*layers: str) -> config_lib.TrainConfig:
    """The `--config` preset, then the named presets `layers` over it, then every training flag given.

    An entry point names the presets that define it (`experiments.table1` trains with SGD whatever
    `--config` is), so the values stay in `blasso_jax.config.PRESETS`. With `--resume --workdir=X` and no
    `--config`, the base is X's saved config instead, so a run continues with no other flag.
    """
    values = {}
    for name in layers:
        values.update(config_lib.PRESETS[name])
    for field in dataclasses.fields(config_lib.TrainConfig):
        value = flags.FLAGS[field.name].value
        if value is not None:
            values[field.name] = tuple(int(v) for v in value) if field.name == "synthetic_shape" else value
    saved = _resumed_config()
    if saved is not None:
        return saved.replace(**values)
    return config_lib.preset(flags.FLAGS.config, **values)


def _resumed_config() -> config_lib.TrainConfig | None:
    """The saved config of the run that `--resume --workdir` continues, unless `--config` names a preset."""
    if not (flags.FLAGS.resume and flags.FLAGS.workdir) or flags.FLAGS["config"].present:
        return None
    return rundir.saved_config(flags.FLAGS.workdir)


def run_main(argv: list[str], body: typing.Callable[[], object]) -> None:
    """What every entry point's `main` does around its `body`: quiet library logs, no stray arguments, and
    errors a user can act on printed as `error: …` with exit status 1 instead of a traceback."""
    quiet_library_logs()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        if "distributed" in flags.FLAGS and flags.FLAGS.distributed:
            initialize_distributed()
        body()
    except USER_ERRORS as error:
        fail(error)
    except stopping.StopRequested as stop:
        print(stop, file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        # Ctrl-C outside the epochs (loading data, compiling): nothing was checkpointed; --resume restarts.
        print("interrupted before a checkpoint; rerun with --resume (or --overwrite)", file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGINT)


def quiet_library_logs() -> None:
    """Hides the INFO chatter of orbax and JAX (one line per checkpoint file) unless --verbosity asks for it."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def fail(error: Exception) -> typing.NoReturn:
    """Exits with status 1 and the error's message, for errors a user can act on."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


def initialize_distributed() -> None:
    """`jax.distributed.initialize()` with the --coordinator_address/--num_processes/--process_id flags.

    Unset flags are auto-detected by JAX (Cloud TPU, SLURM, or the JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID variables). CPU collectives use gloo, so several CPU
    processes (one machine or several) form one mesh; GPUs and TPUs ignore that setting.
    """
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            flags.FLAGS.coordinator_address, num_processes=flags.FLAGS.num_processes, process_id=flags.FLAGS.process_id
        )
    except (ValueError, RuntimeError) as err:
        raise ValueError(
            f"--distributed could not join a multi-process run ({err}); pass --coordinator_address, "
            "--num_processes and --process_id, or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
            "JAX_PROCESS_ID (Cloud TPU and SLURM set them up themselves)"
        ) from err
