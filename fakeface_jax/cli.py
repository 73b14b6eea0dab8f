"""The one wrapper every command line runs through: flags, help, and one-line errors.

Each entry point (`fakeface-train`, `fakeface-predict`, ...) hands its `main` to `run`:

- `-h`/`--help` print a usage line, the tool's own flags and the examples of its module
  docstring, and exit 0; `--helpfull` stays absl's list of every library's flags.
- A mistake on the command line (unknown or missing flag, a bad `--config.KEY=VALUE`,
  unexpected or missing arguments) prints `error: ...` on stderr and exits 2.
- An `errors.UserError` from the command prints `error: ...` and exits 1; Ctrl-C
  outside the train loop (which checkpoints instead) prints one line and exits 130.
- Anything else is a bug and keeps its traceback.

This module imports no JAX, and the entry points import JAX and the library through
`lazy_import`, so that help and usage errors come back in a fraction of a second.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app
from absl import flags
from ml_collections import config_flags

from fakeface_jax import cpu_runtime
from fakeface_jax import errors

FLAGS = flags.FLAGS

# Exit statuses shared by every entry point (the README lists them with predict's own).
OK = 0
USER_ERROR = 1
USAGE_ERROR = 2
INTERRUPTED = 130  # The shell's status for a process ended by SIGINT (128 + 2).

HELP_ARGS = ("-h", "--help", "-?", "--helpshort")
# ml_collections reports a bad --config.KEY=VALUE (unknown key with "did you mean", wrong
# type) with these rather than a flags.Error.
_CONFIG_OVERRIDE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


def lazy_import(name: str) -> types.ModuleType:
  """The module `name`, run on its first attribute access instead of now (the standard
  library's `importlib.util.LazyLoader`): an entry point's heavy imports (JAX, the
  library) cost nothing until its `main` runs. Its parent packages are imported now."""
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec(name)
  if spec is None:
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
  spec.loader = importlib.util.LazyLoader(spec.loader)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def fail(message: object, status: int) -> NoReturn:
  """Prints `error: MESSAGE` as one line on stderr and exits with `status`."""
  text = " ".join(str(message).replace("\\n", " ").split())
  print(f"error: {text}", file=sys.stderr)
  sys.exit(status)


def examples(doc: str) -> list[str]:
  """The first indented block of a module docstring: its example commands."""
  block = []
  for line in doc.splitlines()[1:]:
    if line.startswith("  "):
      block.append(line)
    elif block:
      break
  return block


def usage_line(name: str, required: Sequence[str], arguments: str) -> str:
  words = [name, *(f"--{flag}={flag.upper()}" for flag in required), "[flags]"]
  return "usage: " + " ".join(words + ([arguments] if arguments else []))


def _describe(flag: flags.Flag, required: Sequence[str]) -> str:
  if flag.name in required:
    note = " (required)"
  elif flag.default is None:
    note = ""
  else:
    note = f" (default: {flag.default!r})"
  return textwrap.fill(f"--{flag.name}: {flag.help}{note}", width=88, initial_indent="  ",
                       subsequent_indent="      ")


def help_text(name: str, doc: str, own_flags: Sequence[str], required: Sequence[str],
              arguments: str) -> str:
  """Usage line, summary, the tool's own flags, then its examples."""
  lines = [usage_line(name, required, arguments), "", doc.strip().splitlines()[0], "",
           "flags:", *(_describe(FLAGS[f], required) for f in own_flags)]
  if "config" in own_flags:
    lines.append("  --config.KEY=VALUE: override one field of the config, e.g. "
                 "--config.num_epochs=5")
  lines += ["", "examples:", *examples(doc), "",
            f"Exit status: {OK} done, {USER_ERROR} error (one line on stderr), "
            f"{USAGE_ERROR} bad command line. --helpfull lists every library's flags too."]
  return "\n".join(lines)


def _check_config_files(own_flags: Sequence[str]) -> None:
  """A config file that did not load, as a usage error now rather than at first use."""
  for name in own_flags:
    try:
      # ml_collections defers a config file's load error to the value's first use; other
      # flags' values (str, int, ...) just lack the attribute.
      getattr(FLAGS[name].value, "lock", None)
    except OSError as e:
      reason = str(e.__cause__ or e).strip().splitlines()[-1].strip()
      fail(f"cannot load --{name}={config_flags.get_config_filename(FLAGS[name])}: {reason}",
           USAGE_ERROR)


def _print_help(text: str) -> NoReturn:
  try:
    print(text, flush=True)
  except BrokenPipeError:  # `--help | head`: the reader has all it wanted.
    # Python's documented recipe, so that the flush at exit does not fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
  sys.exit(OK)


def _parse(argv: list[str], help_message: str, name: str, own_flags: Sequence[str],
           required: Sequence[str], arguments: str) -> list[str]:
  """absl's parser with this tool's help, and every command-line mistake as one line."""
  options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  if any(arg in HELP_ARGS for arg in options):
    _print_help(help_message)
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    fail(e, USAGE_ERROR)
  except _CONFIG_OVERRIDE_ERRORS as e:
    # ml_collections wraps the message in quotes (a KeyError's repr).
    message = str(e).strip("'\"").replace("\\'", "'")
    fail(f"bad --config override: {message}", USAGE_ERROR)
  _check_config_files(own_flags)
  missing = [flag for flag in required if FLAGS[flag].value is None]
  if missing:
    fail(f"missing --{missing[0]} ({usage_line(name, required, arguments)})", USAGE_ERROR)
  if arguments and len(rest) == 1:
    fail(f"give {arguments} ({usage_line(name, required, arguments)})", USAGE_ERROR)
  if not arguments and len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])}", USAGE_ERROR)
  return rest


def _call(main: Callable[[list[str]], int | None], argv: list[str],
          huge_pages: bool = True) -> int | None:
  # Re-exec only once the command line is known good: help and usage errors stay fast.
  if huge_pages:
    cpu_runtime.reexec_with_huge_pages()
  try:
    return main(argv)
  except errors.UserError as e:
    fail(e, USER_ERROR)
  except app.UsageError as e:
    fail(e, USAGE_ERROR)
  except KeyboardInterrupt:
    # Training's loop turns Ctrl-C into a checkpoint and `Preempted`; this is one that
    # came while nothing was being trained (preparing data, compiling, testing).
    fail("interrupted (Ctrl-C) with nothing to save; rerun the same command to start "
         "or resume", INTERRUPTED)


def run(main: Callable[[list[str]], int | None], *, name: str, doc: str,
        define_flags: Callable[[], None], required: Sequence[str] = (),
        arguments: str = "", huge_pages: bool = True) -> NoReturn:
  """Defines the tool's flags, parses the command line and runs `main(argv)`.

  Args:
    main: the command; gets argv (program name, then `arguments`); its return value is
      the exit status (None: 0).
    name: the console script, for the usage line.
    doc: the tool's module docstring: summary line, then indented example commands.
    define_flags: defines the tool's own flags (the ones its help lists).
    required: flags that must be given (checked after parsing, so that the error is
      one line with the usage, not absl's validator message).
    arguments: the positional arguments in the usage line, e.g. "IMAGE_OR_FOLDER...";
      at least one is then required. Empty: none are accepted.
    huge_pages: restart once with huge pages (`cpu_runtime`): worth a second start for
      long work such as training, not for a command that answers in seconds.
  """
  # Config files import their siblings as the `configs` package (`from configs import
  # default`), which `python main.py` in the repository root finds through sys.path[0];
  # a console script run there must find them too.
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  before = set(FLAGS)
  define_flags()
  own_flags = [n for n in FLAGS if n not in before and FLAGS[n].name == n]
  message = help_text(name, doc, own_flags, required, arguments)
  app.run(functools.partial(_call, main, huge_pages=huge_pages),
          flags_parser=functools.partial(_parse, help_message=message, name=name,
                                         own_flags=own_flags, required=required,
                                         arguments=arguments))
