"""Tests for the Flax models: output shapes and the studies' parameter counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fakeface_jax import models
from fakeface_jax.models import cnn
from fakeface_jax.models import residual_cnn


def num_params(model, shape):
  params = model.init(jax.random.key(0), jnp.zeros(shape))["params"]
  return sum(x.size for x in jax.tree.leaves(params))


def test_tapering_mlp_has_the_study_parameter_count():
  assert num_params(models.TaperingMLP("taper"), (1, 100, 100, 1)) == 1_288_514


@pytest.mark.parametrize("structure, hidden", [("same", (128, 128)), ("taper", (128, 64)),
                                               ("double", (128, 256))])
def test_node_structures(structure, hidden):
  model = models.TaperingMLP(structure)
  assert model.hidden_sizes == hidden
  expected = 10000 * hidden[0] + hidden[0] + hidden[0] * hidden[1] + hidden[1] + hidden[1] * 2 + 2
  assert num_params(model, (1, 100, 100, 1)) == expected


@pytest.mark.parametrize("model, shape", [
    (models.TaperingMLP("taper"), (3, 100, 100, 3)),
    (models.ConvNet(), (3, 128, 128, 3)),
    (models.ConvNet(features=(8, 8, 8, 8), dense_features=(16,)), (3, 32, 32, 1)),
])
def test_output_is_two_logits_per_image(model, shape):
  variables = model.init(jax.random.key(0), jnp.zeros(shape))
  logits = model.apply(variables, jnp.ones(shape))
  assert logits.shape == (3, 2)


def test_convnet_matches_the_peers_benchmark_network():
  # conv32-conv32-pool-conv64-conv64-pool-dense2 on 128x128x3: 29x29x64 features.
  model = models.ConvNet()
  assert model.feature_map_size(128) == 29
  expected = (3 * 3 * 3 * 32 + 32) + (9 * 32 * 32 + 32) + (9 * 32 * 64 + 64) + (
      9 * 64 * 64 + 64) + (29 * 29 * 64 * 2 + 2)
  assert num_params(model, (1, 128, 128, 3)) == expected


def test_convnet_feature_map_size_limits():
  model = models.ConvNet()
  assert model.feature_map_size(16) == 1
  assert model.feature_map_size(15) == 0


def test_create_model_from_config():
  config = ml_collections.ConfigDict({"name": "mlp", "node_structure": "double", "width": 8})
  model = models.create_model(config)
  assert isinstance(model, models.TaperingMLP) and model.hidden_sizes == (8, 16)


@pytest.mark.parametrize("npr_input, spectral_bins", [("none", 0), ("both", 8), ("only", 0)])
def test_residual_cnn_variants_give_two_logits(npr_input, spectral_bins):
  model = models.ResidualCNN(features=(4, 8), npr_input=npr_input, spectral_bins=spectral_bins,
                          conv_impl="xla")
  x = jnp.ones((3, 16, 16, 3)) * 0.5
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x).shape == (3, 2)


def test_spectral_classifier_is_logistic_regression_on_the_spectrum():
  model = models.SpectralClassifier(num_bins=8)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
  params = model.init(jax.random.key(1), x)
  assert model.apply(params, x).shape == (2, 2)
  assert sum(p.size for p in jax.tree.leaves(params)) == 8 * 2 + 2 + 2 * 8  # Norm + Dense.


def test_upsampling_residual_vanishes_on_nearest_neighbour_upsampled_images():
  small = jax.random.uniform(jax.random.key(0), (2, 5, 5, 3))
  upsampled = jnp.repeat(jnp.repeat(small, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(residual_cnn.upsampling_residual(upsampled), 0, atol=1e-6)
  noise = jax.random.uniform(jax.random.key(1), (1, 9, 9, 1))
  assert residual_cnn.upsampling_residual(noise).shape == (1, 9, 9, 1)
  assert float(jnp.abs(residual_cnn.upsampling_residual(noise)).mean()) > 0.05


def test_max_pool_2x2_equals_flax_max_pool():
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  np.testing.assert_array_equal(cnn.max_pool_2x2(x),
                                nn.max_pool(x, (2, 2), strides=(2, 2)))
