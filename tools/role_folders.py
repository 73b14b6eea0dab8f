r"""Lays out the files of one role of a run (e.g. its test images) as folders to evaluate.

  python tools/role_folders.py --workdir runs/general --role test --out /tmp/general_test
  fakeface-evaluate --workdir runs/general --folder /tmp/general_test/ciplab \
      --folder /tmp/general_test/faces140k --shifts clean,halved_q90

Reads the run's `data_files.csv` (which files played which role) and `config.json`
(where each dataset's files are: `data.manual_dir`, or each mixture source's), and
makes OUT/<source>/{real,fake}/ of symbolic links to them (OUT/{real,fake}/ for a run
on one dataset), so that the cross-dataset report, and its format shifts, can score
exactly the images a run held out, as files. A mixture source whose files the run
re-saved (config.data.resave) gets no folder: score its clean source's under a shift.
"""

from __future__ import annotations

import argparse
import csv
import json
import os


def manual_dirs(config: dict) -> dict[str, str]:
  """Source name ("" for a single dataset) -> the folder its paths are relative to.
  Sources whose files the run re-saved (config.data.resave) are left out: the links
  would be to the files as they are, not to what the run read."""
  mixture = config["data"].get("mixture") or {}
  if not mixture:
    return {"": config["data"]["manual_dir"]}
  return {name: source.get("manual_dir", config["data"]["manual_dir"])
          for name, source in mixture.items()
          if tuple(source.get("resave", {}).get("quality", (0, 0))) == (0, 0)}


def link_role(workdir: str, role: str, out: str) -> dict[str, int]:
  """Makes the links; returns how many files each source got."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    roots = manual_dirs(json.load(f))
  counts: dict[str, int] = {}
  with open(os.path.join(workdir, "data_files.csv"), newline="") as f:
    for row in csv.DictReader(f):
      if row["role"] != role:
        continue
      source, _, path = row["path"].rpartition(":") if "" not in roots else ("", "",
                                                                            row["path"])
      if source not in roots:
        continue
      target = os.path.abspath(os.path.join(roots[source], path))
      folder = os.path.join(out, source, row["label"])
      os.makedirs(folder, exist_ok=True)
      name = path.replace(os.sep, "__")
      os.symlink(target, os.path.join(folder, name))
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
  for source, count in link_role(args.workdir, args.role, args.out).items():
    print(f"{os.path.join(args.out, source)}: {count} {args.role} files")


if __name__ == "__main__":
  main()
