r"""Trains and evaluates a fake-face detector from a config file.

  python main.py --config configs/default.py --workdir runs/default
  python main.py --config configs/mlp.py:gray,taper --workdir runs/mlp --config.num_epochs=5
  python main.py --config configs/detector.py --workdir runs/cv --folds 5 \
      --config.data.name=ciplab --config.data.manual_dir=/path/to/ciplab \
      --config.data.validation_fraction=0.1

On several hosts (GPU nodes, a TPU pod slice) run the same command on every host with
`--distributed`; see the README.
"""

import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fakeface_jax import checkpointing
from fakeface_jax import config_checks
from fakeface_jax import cpu_runtime
from fakeface_jax import crossval
from fakeface_jax import train
from fakeface_jax import workdir_lock
from fakeface_jax.data import datasets

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.DEFINE_integer("folds", 0, "Cross-validate instead: train fold k of this many in "
                     "WORKDIR/fold_k and summarise them in WORKDIR/crossval.md.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first. On TPU "
                  "pods, SLURM and Kubernetes the other flags are detected automatically.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (--distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (--distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (--distributed).")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with --config override errors as one line instead of a traceback."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections reports an unknown key (with "Did you mean") as an AttributeError.
    message = " ".join(str(e).replace("\\n", " ").strip("'\"").split())
    sys.exit(f"error: bad --config override: {message}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  checkpointing.quiet_orbax_logging()
  if FLAGS.distributed:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  try:
    if FLAGS.folds:
      crossval.cross_validate(FLAGS.config, FLAGS.workdir, FLAGS.folds)
    else:
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (config_checks.ConfigError, datasets.DatasetError, checkpointing.CheckpointError,
          train.NonFiniteLossError, train.Preempted, workdir_lock.WorkdirBusy) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  cpu_runtime.reexec_with_huge_pages()
  app.run(main, flags_parser=parse_flags)
