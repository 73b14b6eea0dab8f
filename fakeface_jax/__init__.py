"""fakeface_jax: train, evaluate and serve detectors of fake face images with JAX and Flax."""
