"""Test-session hooks shared by every test module."""

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. One process runs the whole suite;
    without this it keeps every program any module compiled (about 6 GB of them by test_solver)
    and XLA's CPU compiler has crashed there (segfault or abort inside a compile), on a suite
    whose modules all pass alone. Recompiling what a later module needs again costs little:
    rlto's on-disk compilation cache serves it."""
    yield
    jax.clear_caches()
    gc.collect()
