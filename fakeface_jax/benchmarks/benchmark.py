r"""Training-throughput benchmark of the studies' models, on the protocol of peers_bench.py.

  fakeface-benchmark --model cnn
  fakeface-benchmark --model mlp --compare --peers_python=/tmp/peers/bin/python
  fakeface-benchmark --predict
  fakeface-benchmark --cold_start photo.jpg --repeats 3

Same models, batch sizes, optimizer, loss and synthetic uint8 data as
`shared/bench/peers_bench.py` (Keras and PyTorch): 3 warm-up steps, then the median of
5 repeats of N steps. The step is the project's own compiled `steps.train_step`. Prints
one JSON line with images/s, achieved GFLOP/s (XLA's count of the compiled step), the
machine's float32 matrix-product ceiling measured in the same run, and the device;
`--compare` runs the peers' script for Keras and PyTorch in the same run and adds their
images/s, their GFLOP/s at our step's FLOP count, and our ratio to each.

`--predict` measures inference instead: for every model config, images/s of
`scoring.predict_files` (read and decode JPEG files in threads, then the compiled
P(fake) in fixed batches), the median of `--repeats` passes over the same files after
one that compiles. One JSON line per config. Parameters are an initialisation: speed
does not depend on what was learned.

`--cold_start PATH` times `fakeface-predict PATH` with the packaged detector in new
processes: the first call with an empty compilation cache, then `--repeats` calls with
it warm (and a folder's photos per second).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags
from PIL import Image

from fakeface_jax import cli
from fakeface_jax import config_files

# Loaded on first use: `--help` and usage errors answer without JAX.
jax = cli.lazy_import("jax")
optax = cli.lazy_import("optax")
image_decoding = cli.lazy_import("fakeface_jax.data.image_decoding")
preprocessing = cli.lazy_import("fakeface_jax.data.preprocessing")
models = cli.lazy_import("fakeface_jax.models")
inference = cli.lazy_import("fakeface_jax.serving.inference")
scoring = cli.lazy_import("fakeface_jax.serving.scoring")
train_steps = cli.lazy_import("fakeface_jax.training.steps")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line; called by the entry points, not on import."""
  flags.DEFINE_enum("model", "cnn", ["mlp", "cnn"], "Which study's model.")
  flags.DEFINE_string("conv_impl", "auto", "ConvNet convolution implementation.")
  flags.DEFINE_integer("steps", 0, "Steps per repeat (0: the protocol's 10 for mlp, 20 for cnn).")
  flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
  flags.DEFINE_bool("compare", False, "Also run peers_bench.py for Keras and PyTorch.")
  flags.DEFINE_bool("predict", False, "Measure predict's images/s of every model config "
                    "instead of training throughput.")
  flags.DEFINE_integer("predict_images", 256, "JPEG files per --predict pass.")
  flags.DEFINE_string("cold_start", None, "A photo or folder: time `fakeface-predict` on it "
                      "in new processes, with an empty compilation cache, then a warm one.")
  flags.DEFINE_string("peers_python", sys.executable,
                      "Python with TensorFlow/Keras and/or PyTorch for --compare.")
  flags.DEFINE_string("peers_bench", os.path.join(
      os.path.dirname(__file__), "..", "..", "..", "shared", "bench", "peers_bench.py"),
                      "Path of peers_bench.py.")


# The protocol of peers_bench.py: input shape, batch size, steps per repeat.
PROTOCOL = {
    "mlp": ((100, 100, 1), 2000, 10),
    "cnn": ((128, 128, 3), 32, 20),
}
WARMUP_STEPS = 3
# What --predict measures: the studies' models, the baselines and the detector.
PREDICT_CONFIGS = ("configs/mlp.py:gray,taper", "configs/cnn.py", "configs/spectral.py",
                   "configs/cooccurrence.py", "configs/detector.py",
                   "configs/residual_cnn.py")
PREDICT_IMAGE_SIZE = 256  # The 140k images' size: each model resizes as it was trained.
# Side of the square float32 matrix product that measures the machine's GEMM ceiling.
MATMUL_SIZE = 2048


def matmul_gflops_per_s(repeats: int = 10) -> float:
  """GFLOP/s of a large float32 matrix product: the ceiling a GEMM-bound step can reach.

  Reported beside each model's achieved GFLOP/s because shared machines differ by up to
  2x from run to run: the fraction of this ceiling is what compares across runs. The
  best of `repeats` rather than the median, since a ceiling is what the machine can do
  when nothing else runs.
  """
  a = jax.random.normal(jax.random.key(0), (MATMUL_SIZE, MATMUL_SIZE), jax.numpy.float32)
  product = jax.jit(jax.numpy.dot)
  jax.block_until_ready(product(a, a))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(product(a, a))
    times.append(time.perf_counter() - start)
  return 2 * MATMUL_SIZE**3 / min(times) / 1e9


def benchmark_model(name: str, conv_impl: str = "auto", steps: int = 0,
                    repeats: int = 5) -> dict:
  """Images/s of the compiled train step for study model `name` ("mlp" or "cnn")."""
  shape, batch, default_steps = PROTOCOL[name]
  steps = steps or default_steps
  ceiling = matmul_gflops_per_s()
  model = (models.TaperingMLP("taper") if name == "mlp"
           else models.ConvNet((32, 32, 64, 64), conv_impl=conv_impl))
  rng = np.random.default_rng(0)
  data = {"image": jax.numpy.asarray(rng.integers(0, 256, (batch, *shape), dtype=np.uint8)),
          "label": jax.numpy.asarray(rng.integers(0, 2, (batch,)).astype(np.int32))}
  state = train_steps.create_train_state(jax.random.key(0), model, shape, optax.adam(1e-3))
  totals = train_steps.init_totals()
  step = jax.jit(functools.partial(train_steps.train_step, flip=False, rotation_degrees=0.0),
                 donate_argnums=(0, 1))
  key = jax.random.key(1)
  compiled = step.lower(state, totals, data, key).compile()
  flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))

  for _ in range(WARMUP_STEPS):
    state, totals = step(state, totals, data, key)
  jax.block_until_ready(state)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, totals = step(state, totals, data, key)
    jax.block_until_ready(state)
    rates.append(batch * steps / (time.perf_counter() - start))
  images_per_s = float(np.median(rates))
  gflops_per_s = flops * images_per_s / batch / 1e9
  return {"framework": "jax", "version": jax.__version__, "model": name,
          "conv_impl": conv_impl if name == "cnn" else None, "batch": batch,
          "images_per_s": round(images_per_s, 1),
          "gflops_per_s": round(gflops_per_s, 1),
          "matmul_gflops_per_s": round(ceiling, 1),
          "fraction_of_matmul": round(gflops_per_s / ceiling, 2),
          "gflop_per_image": round(flops / batch / 1e9, 6),
          "runs": [round(r, 1) for r in rates],
          "device": jax.devices()[0].device_kind, "device_count": jax.device_count()}


def write_jpegs(folder: str, count: int, size: int = PREDICT_IMAGE_SIZE) -> list[str]:
  """`count` distinct smooth-noise JPEGs (quality 75, as the 140k set) in `folder`."""
  rng = np.random.default_rng(0)
  paths = []
  for i in range(count):
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
    paths.append(os.path.join(folder, f"{i:05d}.jpg"))
    image.save(paths[-1], quality=75)
  return paths


def benchmark_predict(spec: str, paths: list[str], repeats: int = 3) -> dict:
  """Images/s of `scoring.predict_files` with the model of config `spec`."""
  config = config_files.load_config(spec)
  model = models.create_model(config.model)
  size, gray = config.data.image_size, config.data.grayscale
  if model.initialises_from_data:  # Its feature statistics need real inputs.
    init = np.stack([image_decoding.decode_image(pathlib.Path(p).read_bytes(), size, gray)
                     for p in paths[:16]])
  else:
    init = np.zeros((1, size, size, 1 if gray else 3), np.uint8)
  params = jax.jit(model.init)(jax.random.key(0), preprocessing.rescale(init))["params"]
  predictor = inference.Predictor(config, params, inference.DEFAULT_THRESHOLD, step=0)
  scoring.predict_files(predictor, paths[:predictor.batch_size])  # Compiles.
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    scoring.predict_files(predictor, paths)
    rates.append(len(paths) / (time.perf_counter() - start))
  return {"config": spec, "model": config.model.name, "image_size": size,
          "images": len(paths), "predict_images_per_s": round(float(np.median(rates)), 1),
          "runs": [round(r, 1) for r in rates], "device": jax.devices()[0].device_kind}


def benchmark_cold_start(path: str, repeats: int = 3) -> dict:
  """Seconds of `fakeface-predict PATH` (the packaged detector) in a new process: the
  first call, with an empty compilation cache, then the median of `repeats` calls that
  find it warm; for a folder, also its photos per second when warm."""
  seconds = []
  with tempfile.TemporaryDirectory() as cache:
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # The command's own cache is measured.
    for _ in range(1 + repeats):
      start = time.perf_counter()
      subprocess.run([sys.executable, "-m", "fakeface_jax.serving.predict", "--output", os.devnull,
                      path], env=env, check=False, capture_output=True)
      seconds.append(time.perf_counter() - start)
  result = {"benchmark": "predict_cold_start", "path": path, "first_call_s":
            round(seconds[0], 2), "warm_s_median": round(float(np.median(seconds[1:])), 2),
            "warm_s": [round(t, 2) for t in seconds[1:]], "device": jax.devices()[0].device_kind}
  if os.path.isdir(path):
    photos = len(inference.find_images([path]))
    result["photos"] = photos
    result["warm_photos_per_s"] = round(photos / result["warm_s_median"], 2)
  return result


def run_peer(framework: str, model: str, python: str, script: str) -> dict | None:
  """The peer's JSON line, or None when that framework is not importable there."""
  proc = subprocess.run([python, script, framework, model], capture_output=True, text=True,
                        timeout=1800)
  if proc.returncode != 0:
    print(f"{framework}: not measured ({proc.stderr.strip().splitlines()[-1:]})",
          file=sys.stderr)
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
  del argv  # No positional arguments (cli.run checks).
  if FLAGS.cold_start:
    print(json.dumps(benchmark_cold_start(FLAGS.cold_start, FLAGS.repeats)))
    return
  if FLAGS.predict:
    with tempfile.TemporaryDirectory() as folder:
      paths = write_jpegs(folder, FLAGS.predict_images)
      for spec in PREDICT_CONFIGS:
        print(json.dumps(benchmark_predict(spec, paths, FLAGS.repeats)), flush=True)
    return
  result = benchmark_model(FLAGS.model, FLAGS.conv_impl, FLAGS.steps, FLAGS.repeats)
  if FLAGS.compare:
    for framework in ("keras", "torch"):
      peer = run_peer(framework, FLAGS.model, FLAGS.peers_python, FLAGS.peers_bench)
      if peer:
        result[f"{framework}_images_per_s"] = peer["images_per_s"]
        result[f"{framework}_version"] = peer["version"]
        # Same model, same arithmetic: the peer's rate at our step's FLOP count.
        result[f"{framework}_gflops_per_s"] = round(
            peer["images_per_s"] * result["gflop_per_image"], 1)
        result[f"ratio_vs_{framework}"] = round(
            result["images_per_s"] / peer["images_per_s"], 2)
  print(json.dumps(result))


def run() -> None:
  """Console-script entry point (`fakeface-benchmark`)."""
  cli.run(main, name="fakeface-benchmark", doc=__doc__, define_flags=define_flags)


if __name__ == "__main__":
  run()
