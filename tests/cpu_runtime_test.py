"""The huge-page re-exec: the environment it sets, once."""

from fakeface_jax import cpu_runtime


def test_huge_page_environment():
  env = cpu_runtime.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  if env is not None:  # Linux with glibc.
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert cpu_runtime.environment_with_huge_pages(env) is None  # Never twice.
  assert cpu_runtime.environment_with_huge_pages({"FAKEFACE_NO_REEXEC": "1"}) is None
