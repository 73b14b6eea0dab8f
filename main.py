"""Trains and evaluates a fake-face detector: the same command as `fakeface-train`.

  python main.py --config configs/default.py --workdir runs/default

`python main.py --help` lists the flags; fakeface_jax/training/train_command.py is the code.
"""

from fakeface_jax.training import train_command

if __name__ == "__main__":
  train_command.run()
