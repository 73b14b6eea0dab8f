r"""Trains and evaluates a fake-face detector from a config file (`fakeface-train`).

  fakeface-train --config configs/default.py --workdir runs/default
  fakeface-train --config configs/mlp.py:gray,taper --workdir runs/mlp --config.num_epochs=5
  fakeface-train --config configs/detector.py --workdir runs/cv --folds 5 \
      --config.data.name=ciplab --config.data.manual_dir=/path/to/ciplab \
      --config.data.validation_fraction=0.1
  fakeface-train --config configs/general.py --workdir runs/general_loso --leave_out
  fakeface-train --config configs/general.py --workdir runs/general_pseudo --pseudo_only

`python main.py` is the same command. On several hosts (GPU nodes, a TPU pod slice) run
the same command on every host with `--distributed`; see docs/speed.md, "Data parallelism".
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from fakeface_jax import cli
from fakeface_jax import errors

# Loaded when `main` runs: `--help` and usage errors answer without them.
jax = cli.lazy_import("jax")
crossval = cli.lazy_import("fakeface_jax.experiments.crossval")
leave_out = cli.lazy_import("fakeface_jax.experiments.leave_out")
checkpointing = cli.lazy_import("fakeface_jax.training.checkpointing")
train = cli.lazy_import("fakeface_jax.training.train")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line; called by the entry point, not on import."""
  config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py).",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_integer("folds", 0, "Cross-validate instead: train fold k of this many in "
                       "WORKDIR/fold_k and summarise them in WORKDIR/crossval.md.")
  flags.DEFINE_bool("leave_out", False, "Leave one source out instead: for a data "
                    "mixture, train without each source in WORKDIR/without_NAME and score "
                    "it; the table in WORKDIR/leave_out.md.")
  flags.DEFINE_bool("pseudo_only", False, "Train on reals and pseudo-fakes alone (every "
                    "source's fakes replaced, config.data.pseudo_fakes) in "
                    "WORKDIR/pseudo_only, then score every source's real fakes; the table "
                    "in WORKDIR/pseudo_only.md.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first. On "
                    "TPU pods, SLURM and Kubernetes the other flags are detected "
                    "automatically.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (--distributed).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (--distributed).")
  flags.DEFINE_integer("process_id", None, "This process's index (--distributed).")


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  checkpointing.quiet_orbax_logging()
  if FLAGS.distributed:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  if sum(map(bool, (FLAGS.folds, FLAGS.leave_out, FLAGS.pseudo_only))) > 1:
    raise errors.ConfigError("--folds, --leave_out and --pseudo_only are three "
                             "protocols; pick one")
  if FLAGS.folds:
    crossval.cross_validate(FLAGS.config, FLAGS.workdir, FLAGS.folds)
  elif FLAGS.leave_out:
    leave_out.leave_one_source_out(FLAGS.config, FLAGS.workdir)
  elif FLAGS.pseudo_only:
    leave_out.pseudo_fakes_only(FLAGS.config, FLAGS.workdir)
  else:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def run() -> None:
  """Console-script entry point (`fakeface-train`, and `python main.py`)."""
  cli.run(main, name="fakeface-train", doc=__doc__, define_flags=define_flags,
          required=("config", "workdir"))


if __name__ == "__main__":
  run()
