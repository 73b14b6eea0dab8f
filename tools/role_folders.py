r"""Lays out the files of one role of a run (e.g. its test images) as folders to evaluate.

  python tools/role_folders.py --workdir runs/general --role test --out /tmp/general_test
  fakeface-evaluate --workdir runs/general --folder /tmp/general_test/ciplab \
      --folder /tmp/general_test/faces140k --shifts clean,halved_q90

Reads the run's `data_files.csv` (which files played which role) and `config.json`
(where each dataset's files are: `data.manual_dir`, or each mixture source's), and
makes OUT/<source>/{real,fake}/ of symbolic links to them (OUT/{real,fake}/ for a run
on one dataset), so that the cross-dataset report, and its format shifts, can score
exactly the images a run held out, as files. The files of a source the run re-saved
(config.data.resave) are written out re-saved, as the run read them, not linked.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os

import ml_collections

from fakeface_jax.data import degradations
from fakeface_jax.data import mixture
from fakeface_jax import rundir
from fakeface_jax.training import checkpointing
from fakeface_jax.training import run_config


@dataclasses.dataclass(frozen=True)
class SourceFiles:
  """Where a source's paths are relative to, and how the run re-saved its files (None:
  it read them as they are)."""
  root: str
  resave: degradations.FileResave | None


def source_files(config: ml_collections.ConfigDict) -> dict[str, SourceFiles]:
  """Source name ("" for a single dataset) -> its `SourceFiles`."""
  names = mixture.source_names(config.data)
  data_configs = ({name: mixture.source_config(config, name).data for name in names}
                  if names else {"": config.data})
  return {name: SourceFiles(data.manual_dir, degradations.FileResave.from_config(data.resave))
          for name, data in data_configs.items()}


def place_file(files: SourceFiles, path: str, folder: str) -> None:
  """`path` (relative to its source's root) in `folder`: a link, or the re-saved copy."""
  target = os.path.abspath(os.path.join(files.root, path))
  name = path.replace(os.sep, "__")
  if files.resave is None:
    os.symlink(target, os.path.join(folder, name))
    return
  with open(target, "rb") as f:
    copy = files.resave(f.read(), path)
  # The copy is a JPEG whatever the file was; evaluate finds images by extension.
  stem = name if name.lower().endswith((".jpg", ".jpeg")) else name + ".jpg"
  with open(os.path.join(folder, stem), "wb") as f:
    f.write(copy)


def lay_out_role(workdir: str, role: str, out: str) -> dict[str, int]:
  """Lays the files out; returns how many files each source got."""
  sources = source_files(ml_collections.ConfigDict(run_config.read_config(workdir)))
  counts: dict[str, int] = {}
  with open(os.path.join(workdir, rundir.MANIFEST_CSV), newline="") as f:
    for row in csv.DictReader(f):
      if row["role"] != role:
        continue
      source, _, path = row["path"].rpartition(":") if "" not in sources else (
          "", "", row["path"])
      folder = os.path.join(out, source, row["label"])
      os.makedirs(folder, exist_ok=True)
      place_file(sources[source], path, folder)
      counts[source] = counts.get(source, 0) + 1
  return counts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--role", default="test", choices=("train", "validation", "test"))
  parser.add_argument("--out", required=True, help="A folder that does not exist yet.")
  args = parser.parse_args()
  if os.path.exists(args.out):
    parser.error(f"{args.out} exists; give a new folder")
  try:
    counts = lay_out_role(args.workdir, args.role, args.out)
  except checkpointing.CheckpointError as e:
    parser.error(str(e))
  for source, count in counts.items():
    print(f"{os.path.join(args.out, source)}: {count} {args.role} files")


if __name__ == "__main__":
  main()
