"""Frozen option dataclasses tokenise by value (resume fingerprints, task names), not by id."""

from __future__ import annotations

from dask.base import tokenize

from cryonet.infer.tiling import TilingOptions
from glacierstack.features import FeatureOptions, GLCMParams


def test_equal_options_equal_tokens_and_any_change_shows() -> None:
    assert tokenize(FeatureOptions()) == tokenize(FeatureOptions())
    assert tokenize(FeatureOptions()) != tokenize(FeatureOptions(glcm=GLCMParams(window=9)))
    assert tokenize(FeatureOptions()) != tokenize(FeatureOptions(edges="nan"))
    assert tokenize(GLCMParams(offsets=[(0, 1)])) == tokenize(GLCMParams())  # normalised first
    assert tokenize(TilingOptions(64, 16)) == tokenize(TilingOptions(64, 16))
    assert tokenize(TilingOptions(64, 16)) != tokenize(TilingOptions(64, 8))
    # the token is the values': the same in another process (no id, no repr of an address)
    assert FeatureOptions().__dask_tokenize__() == FeatureOptions().__dask_tokenize__()
