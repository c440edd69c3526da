"""The suite's warning filters (pyproject.toml): our own code raises no DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest


def test_a_deprecation_warning_in_our_code_is_an_error() -> None:
    """The `error::DeprecationWarning` filter covers our modules, this one included."""
    with pytest.raises(DeprecationWarning, match="old API"):
        warnings.warn("old API", DeprecationWarning, stacklevel=1)


def test_a_deprecation_warning_of_a_third_party_module_stays_a_warning() -> None:
    """Only our modules are strict: a warning attributed to a library is reported, not raised."""
    with pytest.warns(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, "library.py", 1, module="library")
