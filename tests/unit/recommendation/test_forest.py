"""The flattened trees score exactly as scikit-learn does, so a shopper's offers do not depend on
how many rows were scored together (Recommend: a few; the batch job: many)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from services.recommendation.features import FEATURE_NAMES
from services.recommendation.forest import SMALL_ROWS
from tests.unit.recommendation.fake_sagemaker import trained_model


def _matrix(rows: int) -> NDArray[np.float64]:
    """Feature values across several scales, with missing values (NaN) and ties at zero."""
    rng = np.random.default_rng(3)
    scales = rng.choice([1.0, 10.0, 100.0], len(FEATURE_NAMES))
    matrix = np.round(rng.random((rows, len(FEATURE_NAMES))) * scales, 1)
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    return matrix


def test_the_forest_is_bit_identical_to_scikit_learn() -> None:
    model = trained_model()
    matrix = _matrix(500)
    assert model.forest is not None
    probability, interval = model.forest.predict(matrix)
    assert np.array_equal(probability, model.classifier.predict_proba(matrix)[:, 1])
    assert np.array_equal(interval, model.interval_regressor.predict(matrix))


def test_small_and_large_matrices_give_the_same_predictions() -> None:
    model = trained_model()
    matrix = _matrix(SMALL_ROWS + 1)
    together = model.predict_matrix(matrix)  # past SMALL_ROWS: scikit-learn
    alone = model.predict_matrix(matrix[:5])  # the flattened trees
    assert np.array_equal(together.score[:5], alone.score)
    assert np.array_equal(together.interval_days[:5], alone.interval_days)
    assert model.predict_matrix(matrix[:0]).score.size == 0
