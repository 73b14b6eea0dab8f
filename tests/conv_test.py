"""Every conv implementation equals lax.conv_general_dilated, forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fakeface_jax.models import conv


def _reference(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize("impl", ["xla", "im2col", "shifted_matmul"])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("kernel_shape", [(3, 3, 5, 7), (2, 4, 3, 2), (1, 1, 4, 6)])
def test_forward_and_gradients_match_xla(impl, padding, kernel_shape):
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (2, 9, 11, kernel_shape[2]))
  kernel = jax.random.normal(kk, kernel_shape)

  def loss(fn, x, kernel):
    return jnp.sum(jnp.sin(fn(x, kernel)))

  ours = lambda x, k: conv.conv2d(x, k, padding=padding, impl=impl)
  theirs = lambda x, k: _reference(x, k, padding)
  np.testing.assert_allclose(ours(x, kernel), theirs(x, kernel), rtol=1e-4, atol=1e-4)
  grads = jax.grad(loss, argnums=(1, 2))(ours, x, kernel)
  expected = jax.grad(loss, argnums=(1, 2))(theirs, x, kernel)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_conv2d_layer_has_nn_conv_parameters():
  x = jnp.ones((1, 8, 8, 3))
  ours = conv.Conv2D(4, impl="im2col").init(jax.random.key(0), x)
  theirs = nn.Conv(4, (3, 3), padding="VALID").init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, theirs)
  np.testing.assert_allclose(conv.Conv2D(4, impl="im2col").apply(theirs, x),
                             nn.Conv(4, (3, 3), padding="VALID").apply(theirs, x),
                             rtol=1e-5, atol=1e-5)


def test_auto_resolves_per_backend_and_unknown_impl_raises():
  expected = "im2col" if jax.default_backend() == "cpu" else "xla"
  assert conv.resolve_impl("auto") == expected
  with pytest.raises(ValueError, match="unknown conv impl 'fft'"):
    conv.resolve_impl("fft")
  with pytest.raises(ValueError, match="padding"):
    conv.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding="FULL")

