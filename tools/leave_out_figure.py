r"""Draws several recipes' leave-one-source-out tables in one figure, for the ablation
in docs/results.md.

  python -m tools.leave_out_figure --out docs/figures/leave_out.png --goal 0.75 \
      "today's recipe=runs/general_loso" "no DCT residuals=runs/loso_nodctr"

Each NAME=WORKDIR is a finished `fakeface-train --leave_out` workdir (its
`leave_out.json`), or with `--pseudo_only` a pseudo-fakes-only one (`pseudo_only.json`);
the figure has a group of bars per held-out source and a bar per recipe
(`leave_out.compare`).
"""

from __future__ import annotations

import argparse
import json
import os

from fakeface_jax.experiments import leave_out


def read_summaries(specs: list[str], prefix: str) -> dict[str, dict]:
  """NAME=WORKDIR specs -> each workdir's written table, by name, in order."""
  summaries = {}
  for spec in specs:
    name, sep, workdir = spec.rpartition("=")
    if not sep or not name:
      raise SystemExit(f"error: expected NAME=WORKDIR, got {spec!r}")
    path = os.path.join(workdir, prefix + ".json")
    if not os.path.isfile(path):
      raise SystemExit(f"error: {path} does not exist: is {workdir} a finished run?")
    with open(path, encoding="utf-8") as f:
      summaries[name] = json.load(f)
  return summaries


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", metavar="NAME=WORKDIR")
  parser.add_argument("--out", required=True, help="The figure's path (PNG).")
  parser.add_argument("--goal", type=float, default=None, help="AUC each source must reach.")
  parser.add_argument("--pseudo_only", action="store_true",
                      help="Compare pseudo-fakes-only tables instead.")
  args = parser.parse_args()
  prefix = leave_out.PSEUDO_ONLY if args.pseudo_only else leave_out.PREFIX
  print(leave_out.compare(read_summaries(args.runs, prefix), args.out, args.goal))


if __name__ == "__main__":
  main()
