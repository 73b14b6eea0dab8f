"""Tests for the train and eval steps, schedules, data parallelism and the full loop."""

import json
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from configs import detector
from conftest import FakeClock
from conftest import run_on_cpu_devices
from fakeface_jax import classes
from fakeface_jax import config_checks
from fakeface_jax.data import jpeg_tables
from fakeface_jax.data import preprocessing
from fakeface_jax import errors
from fakeface_jax import models
from fakeface_jax import progress
from fakeface_jax import rundir
from fakeface_jax.training import speed
from fakeface_jax.training import steps
from fakeface_jax.training import train


def fixed_batch(n=32, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
          "label": rng.integers(0, 2, (n,)).astype(np.int32)}


def test_train_steps_fit_a_fixed_batch_to_its_own_labels():
  model = models.ConvNet(features=(8, 8, 8, 8), conv_impl="xla")
  state = steps.create_train_state(jax.random.key(0), model, (16, 16, 3), optax.adam(3e-3))
  step = jax.jit(lambda s, t, b: steps.train_step(s, t, b, jax.random.key(1), flip=False,
                                                  rotation_degrees=0.0))
  batch = jax.tree.map(jnp.asarray, fixed_batch())
  losses = []
  for _ in range(40):
    totals = steps.init_totals()
    state, totals = step(state, totals, batch)
    losses.append(float(totals["loss_sum"] / totals["count"]))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step) == 40
  # A falling loss alone would also come from fitting the labels backwards: the
  # evaluation step, which reads the batch's labels itself, must find them learned.
  out = steps.eval_step(state.params, batch, apply_fn=state.apply_fn)
  assert np.mean(np.argmax(out["probs"], -1) == fixed_batch()["label"]) >= 0.9
  assert float(out["loss"].mean()) < 0.5 * losses[0]


def test_train_step_records_the_first_nonfinite_step():
  model = models.TaperingMLP(width=4)
  state = steps.create_train_state(jax.random.key(0), model, (16, 16, 3), optax.sgd(1e30))
  batch = jax.tree.map(jnp.asarray, fixed_batch())
  totals = steps.init_totals()
  for _ in range(4):
    state, totals = steps.train_step(state, totals, batch, jax.random.key(0), flip=False,
                                     rotation_degrees=0.0)
  step = int(totals["first_nonfinite_step"])
  assert 0 < step < 4
  with pytest.raises(train.NonFiniteLossError, match=f"non-finite at step {step}"):
    train._check_finite(jax.device_get(totals))


def test_eval_step_returns_per_example_loss_and_probabilities():
  model = models.TaperingMLP(width=4)
  state = steps.create_train_state(jax.random.key(0), model, (16, 16, 3), optax.adam(1e-3))
  out = steps.eval_step(state.params, jax.tree.map(jnp.asarray, fixed_batch(n=5)),
                        apply_fn=state.apply_fn)
  assert out["loss"].shape == (5,) and out["probs"].shape == (5, 2)
  np.testing.assert_allclose(out["probs"].sum(-1), 1.0, rtol=1e-6)


def test_weight_decay_is_an_l2_penalty_on_kernels_only():
  config = default.get_config()
  config.learning_rate, config.weight_decay = 0.5, 0.1
  params = {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.full((2,), 3.0)}
  tx = steps.optimizer(config, steps_per_epoch=1)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  # Adam's first step moves a weight by lr against the sign of its gradient, here the
  # penalty's 0.1 * 3: kernels shrink, biases (no penalty, no gradient) stay.
  np.testing.assert_allclose(updates["kernel"], -0.5, rtol=1e-4)
  np.testing.assert_allclose(updates["bias"], 0.0)
  config.weight_decay = 0.0
  plain_adam = steps.optimizer(config, 1)
  updates, _ = plain_adam.update(zero, plain_adam.init(params), params)
  np.testing.assert_allclose(updates["kernel"], 0.0)


def test_data_dependent_models_initialise_on_augmented_training_images(tiny_config):
  data = train.input_pipeline.load_data(tiny_config)
  key = jax.random.key(0)
  images, _ = steps.initialisation_images(data["train"], tiny_config.augment, 3, key)
  assert images.shape == (min(steps.NUM_INIT_IMAGES, len(data["train"])),
                          *data["train"].image_shape)
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  np.testing.assert_array_equal(
      images, steps.initialisation_images(data["train"], tiny_config.augment, 3, key)[0])

  def high_frequency_energy(batch):
    return float(jnp.mean(jnp.diff(batch, axis=2) ** 2))

  # The same images, shrunk and enlarged on the host, or blurred on the device: both
  # degradations reach the sample the model's statistics are fitted on.
  for where, setting in (("host", {"downscale_prob": 1.0}),
                         ("device", {"blur_prob": 1.0, "blur_max_sigma": 3.0})):
    augment = tiny_config.augment.copy_and_resolve_references()
    augment[where].update(setting)
    degraded, _ = steps.initialisation_images(data["train"], augment, 3, key)
    assert high_frequency_energy(degraded) < 0.8 * high_frequency_energy(images), setting


def test_inverse_time_schedule_is_keras_decay():
  config = default.get_config()
  config.learning_rate, config.num_epochs, config.lr_schedule = 1e-3, 10, "inverse_time"
  schedule = steps.learning_rate_schedule(config, steps_per_epoch=5)
  decay = 1e-3 / 10
  for step in (0, 1, 100):
    np.testing.assert_allclose(schedule(step), 1e-3 / (1 + decay * step), rtol=1e-6)
  config.lr_decay = 0.5
  np.testing.assert_allclose(steps.learning_rate_schedule(config, 5)(2), 1e-3 / 2, rtol=1e-6)


_DEVICE_SCRIPT = textwrap.dedent("""
    import functools, sys
    import jax, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from fakeface_jax import models
    from fakeface_jax.training import sharding
    from fakeface_jax.training import steps
    mesh = sharding.make_mesh()
    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    model = models.ConvNet(features=(8, 8, 8, 8), conv_impl="xla")
    state = jax.device_put(steps.create_train_state(
        jax.random.key(0), model, (16, 16, 3), optax.adam(1e-2)), rep)
    step = jax.jit(functools.partial(steps.train_step, flip=True, rotation_degrees=10.0),
                   out_shardings=(rep, rep), donate_argnums=(0, 1))
    totals = jax.device_put(steps.init_totals(), rep)
    rng = np.random.default_rng(0)
    for i in range(5):
      batch = {"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
               "label": rng.integers(0, 2, (8,)).astype(np.int32)}
      state, totals = step(state, totals, sharding.to_global(batch, shard), jax.random.key(1))
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])
    np.save(sys.argv[1], flat)
    print(jax.device_count(), float(totals["loss_sum"]))
""")


@pytest.mark.slow
def test_one_and_two_devices_give_the_same_parameters(tmp_path):
  results = {}
  for devices in (1, 2):
    out = tmp_path / f"params{devices}.npy"
    proc = run_on_cpu_devices(_DEVICE_SCRIPT, devices, str(out))
    assert proc.stdout.split()[0] == str(devices)
    results[devices] = np.load(out)
  np.testing.assert_allclose(results[1], results[2], rtol=1e-5, atol=1e-6)


def test_bad_configs_fail_with_one_clear_line(tiny_config):
  cases = [
      (("model", "name"), "resnet9000", "unknown config.model.name 'resnet9000'"),
      (("data", "name"), "imagenet", "unknown config.data.name 'imagenet'"),
      (("data", "image_size"), 15, "too small for the conv stack"),
      (("batch_size",), 0, "config.batch_size=0 must be a positive multiple"),
      (("data", "validation_fraction"), 1.0,
       r"config.data.validation_fraction must be in \[0, 1\), got 1.0"),
      (("max_real_fpr",), 1.5, r"config.max_real_fpr must be in \[0, 1\], got 1.5"),
  ]
  for path, value, message in cases:
    config = tiny_config.copy_and_resolve_references()
    node = config
    for key in path[:-1]:
      node = node[key]
    node[path[-1]] = value
    with pytest.raises(errors.ConfigError, match=message) as info:
      config_checks.check_config(config)
    assert "\n" not in str(info.value)
  config = tiny_config.copy_and_resolve_references()
  config.augment.host.downscale_prob, config.augment.host.downscale_min_factor = 0.5, 1.0
  with pytest.raises(errors.ConfigError,
                     match=r"host.downscale_min_factor must be in \(0, 1\), got 1.0"):
    config_checks.check_config(config)
  config = detector.get_config()
  config.model.jpeg_features = ("dct",)
  with pytest.raises(errors.ConfigError, match=r"config.model does not fit model "
                     r"'cooccurrence': unknown jpeg_features \['dct'\]"):
    config_checks.check_config(config)


def test_batch_larger_than_dataset_fails_before_training(tiny_config, tmp_path):
  tiny_config.batch_size = 128
  workdir = tmp_path / "run"
  with pytest.raises(errors.ConfigError,
                     match="batch_size=128 is larger than the 64 training examples"):
    train.train_and_evaluate(tiny_config, str(workdir))
  assert not workdir.exists()


@pytest.mark.slow
def test_train_and_evaluate_writes_outputs_and_resumes(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(tiny_config, workdir)
  # Whether it learned is learning_test's question; here, what it wrote and counted.
  assert (results["num_train"], results["num_validation"], results["num_test"]) == (64, 40, 40)
  assert sum(map(sum, results["confusion_matrix"])) == 40
  for name in ("metrics.csv", "metrics.jsonl", "test_metrics.json", "curves.png",
               "confusion_matrix.png", "config.json"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["epoch"] for line in f] == [1, 2]
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert saved == [4, 8]  # 64 images / batch 16 = 4 steps per epoch.

  # Asking for more epochs continues from epoch 2 instead of restarting.
  tiny_config.num_epochs = 3
  again = train.train_and_evaluate(tiny_config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]
  assert again["num_test"] == 40
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert saved[-1] == 12


def test_progress_lines_are_due_every_log_interval_and_eta_leaves_out_the_first_step():
  clock = FakeClock()
  throughput = speed.Throughput(total_steps=11, batch_size=10, clock=clock)
  clock.now += 100.0  # The first step compiles.
  throughput.step_done(None)
  assert throughput.line_due()  # 100 s without a line.
  assert throughput.summary() == "compiled"
  for _ in range(5):
    clock.now += 2.0
    throughput.step_done(None)
    assert not throughput.line_due()
  clock.now += progress.LOG_INTERVAL_S - 10.0
  assert throughput.line_due()
  # 5 steps of 10 images in 30 s since the first step ended, 5 steps left: 30 s.
  assert throughput.summary() == "2 img/s | ETA 0m30s"
  assert not throughput.line_due()


def test_progress_waits_for_the_device_about_once_a_second(monkeypatch):
  # Steps are dispatched asynchronously; waits make time-based lines describe finished
  # steps. At 0.1 s a step, the tracker waits every 10 steps.
  waits = []
  monkeypatch.setattr(speed.jax, "block_until_ready", waits.append)
  clock = FakeClock()
  throughput = speed.Throughput(total_steps=100, batch_size=1, clock=clock)
  for step in range(41):
    clock.now += 0.1
    throughput.step_done(step)
  assert waits == [0, 10, 20, 30, 40]


def test_rerunning_a_finished_run_returns_its_saved_results_without_loading_data(
    finished_tiny_run, tiny_config, monkeypatch, caplog):
  workdir, results = finished_tiny_run

  def fail(*args, **kwargs):
    raise AssertionError("a finished run loaded data or initialised its model")

  monkeypatch.setattr(train.input_pipeline, "load_data", fail)
  monkeypatch.setattr(train, "_setup", fail)
  # The shared run may have prepared its data elsewhere (conftest's RUN_CACHE).
  with open(rundir.path(workdir, rundir.CONFIG_JSON)) as f:
    tiny_config.data.data_dir = json.load(f)["data"]["data_dir"]
  # On absl's logger: earlier tests may have set its verbosity to warnings.
  with caplog.at_level("INFO", logger="absl"):
    assert train.train_and_evaluate(tiny_config, workdir) == results
  assert ("Run complete: 2/2 epochs, best step "
          f"{results['best_step']}; raise --config.num_epochs to train further") in caplog.text
  assert "at the validation-chosen threshold" in caplog.text


def test_test_metrics_hold_the_accuracy_at_the_validation_chosen_threshold(
    finished_tiny_run):
  workdir, results = finished_tiny_run
  with open(os.path.join(workdir, "test_metrics.json")) as f:
    saved = json.load(f)
  with open(os.path.join(workdir, "threshold.json")) as f:
    threshold = json.load(f)
  assert saved == results
  assert results["threshold"] == threshold["threshold"]
  # An accuracy over the 40 test images, counted at that threshold.
  correct = results["test_accuracy_at_threshold"] * results["num_test"]
  assert correct == pytest.approx(round(correct)) and 0 <= correct <= 40


def test_self_blending_makes_a_share_of_real_images_fake_in_the_train_step():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)), jnp.uint8)
  real = jnp.full((8,), classes.REAL, jnp.int32)
  key = jax.random.key(0)
  plain, labels = steps.model_inputs(key, images, real, False, {"self_blend_share": 0.0})
  np.testing.assert_array_equal(plain, preprocessing.rescale(images))
  np.testing.assert_array_equal(labels, real)
  blended, labels = jax.jit(lambda k, x, y: steps.model_inputs(
      k, x, y, False, {"self_blend_share": 1.0, "self_blend_kinds": ("face",)}))(
          key, images, real)
  np.testing.assert_array_equal(labels, np.full(8, classes.FAKE))
  changed = np.abs(np.asarray(blended) - np.asarray(plain)).max(axis=(1, 2, 3))
  assert np.all(changed > 0.01)


def test_a_run_with_self_blended_pseudo_fakes_trains(tiny_config, tmp_path):
  tiny_config.augment.device.self_blend_share = 0.5
  results = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert np.isfinite(results["test_loss"])
  tiny_config.augment.device.self_blend_kinds = ("ears",)
  with pytest.raises(errors.ConfigError, match="self_blend_kinds must be"):
    config_checks.check_config(tiny_config)


def test_the_train_and_eval_steps_hand_each_images_jpeg_tables_to_a_model_that_reads_them():
  model = models.create_model(detector.get_config().model)
  images = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)
  apply_fn = steps.model_apply_fn(model)
  variables = jax.jit(model.init)(jax.random.key(0), images)
  def logits(quality):
    tables = np.broadcast_to(jpeg_tables.standard_tables(quality), (2, 2, 8, 8))
    return apply_fn(variables, images, train=False, jpeg_tables=tables)
  assert not np.allclose(logits(75), logits(95))
  # A model that reads no tables takes the same call and ignores them.
  mlp = models.create_model(default.get_config().model)
  mlp_variables = mlp.init(jax.random.key(0), images)
  np.testing.assert_array_equal(
      steps.model_apply_fn(mlp)(mlp_variables, images, train=False,
                                jpeg_tables=np.zeros((2, 2, 8, 8))),
      mlp.apply(mlp_variables, images, train=False))
