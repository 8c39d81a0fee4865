"""The test tiers (README, "Tests"): a property's cheaper variant for the default suite, its deep one for the
`deep` tier (DIALER_DEEP_TESTS=1, which .ci/run runs after the default suite)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings


def smoke_and_deep(prop: Callable[..., None], given: Callable[[Callable[..., None]], Callable[..., None]], *,
                   smoke: int, deep: int, **options: Any) -> tuple[Callable[..., None], Callable[..., None]]:
    """Two hypothesis tests of `prop` with the same strategies (`given`, a `hypothesis.given(...)`): `smoke`
    examples in the default suite, `deep` examples in the deep tier. Both draw fixed examples (tests/conftest.py)."""
    return (settings(max_examples=smoke, **options)(given(prop)),
            pytest.mark.deep(settings(max_examples=deep, **options)(given(prop))))
