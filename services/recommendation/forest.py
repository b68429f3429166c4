"""The subscription model's two boosted-tree ensembles, flattened once for small requests.

scikit-learn scores one tree per Python call (200 calls per request here) and opens an OpenMP
parallel region for each: for the 20 products of a Recommend call that costs 1-2 ms of CPU on
one thread, and tens of ms when its worker threads fight the server for two cores. `Forest`
copies every tree's nodes into flat arrays when the model is loaded and walks all trees of
both ensembles at once, one numpy step per tree level, only for the rows not yet at a leaf
(about 0.3 ms for 20 rows). Leaves are summed in scikit-learn's order (baseline, then tree by
tree) and the same `expit` is applied, so the results are bit-identical to `predict_proba` and
`predict` (tests/unit/recommendation/test_forest.py). Past SMALL_ROWS rows scikit-learn's
compiled loop is faster, so large matrices (the batch job) still go to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

SMALL_ROWS = 200
"""Most rows scored here; measured crossover with scikit-learn about 250 rows (2 cores)."""


def _baseline(estimator: HistGradientBoostingClassifier | HistGradientBoostingRegressor) -> float:
    return float(np.ravel(estimator._baseline_prediction)[0])


@dataclass(frozen=True, eq=False)
class Forest:
    """Both ensembles' trees as flat node arrays (classifier trees first)."""

    roots: NDArray[np.intp]
    """Index of each tree's root node."""
    children: NDArray[np.intp]
    """children[2 * node + went_left]: the next node; a leaf points at itself."""
    feature: NDArray[np.intp]
    threshold: NDArray[np.float64]
    missing_left: NDArray[np.bool_]
    is_leaf: NDArray[np.bool_]
    value: NDArray[np.float64]
    classifier_trees: int
    classifier_baseline: float
    regressor_baseline: float

    @classmethod
    def of(
        cls, classifier: HistGradientBoostingClassifier, regressor: HistGradientBoostingRegressor
    ) -> Forest | None:
        """The flattened ensembles, or None when a tree uses a categorical split (not
        supported here: scikit-learn then scores every size)."""
        trees = [
            predictors[0].nodes
            for estimator in (classifier, regressor)
            for predictors in estimator._predictors
        ]
        if len(classifier._predictors[0]) != 1 or len(regressor._predictors[0]) != 1:
            return None  # several trees per iteration: a multi-class model
        nodes = np.concatenate(trees)
        if nodes["is_categorical"].any():
            return None
        sizes = np.array([len(tree) for tree in trees])
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        offset = np.repeat(roots, sizes)
        is_leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes))
        right = np.where(is_leaf, own, nodes["right"] + offset)
        left = np.where(is_leaf, own, nodes["left"] + offset)
        return cls(
            roots=roots,
            children=np.stack([right, left], axis=1).ravel().astype(np.intp),
            feature=np.where(is_leaf, 0, nodes["feature_idx"]).astype(np.intp),
            threshold=nodes["num_threshold"].astype(np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            is_leaf=is_leaf,
            value=nodes["value"].astype(np.float64),
            classifier_trees=len(classifier._predictors),
            classifier_baseline=_baseline(classifier),
            regressor_baseline=_baseline(regressor),
        )

    def _leaf_values(self, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
        """The leaf value each row reaches in each tree, shape (rows, trees)."""
        rows, features = matrix.shape
        trees = self.roots.size
        node = np.tile(self.roots, rows)
        row_start = np.repeat(np.arange(rows, dtype=np.intp) * features, trees)
        values = np.ascontiguousarray(matrix, dtype=np.float64).ravel()
        has_missing = bool(np.isnan(values).any())
        active = np.arange(node.size)
        while active.size:
            current = node[active]
            x = values[row_start[active] + self.feature[current]]
            left = x <= self.threshold[current]
            if has_missing:
                left |= np.isnan(x) & self.missing_left[current]
            following = self.children[2 * current + left]
            node[active] = following
            active = active[~self.is_leaf[following]]
        return self.value[node].reshape(rows, trees)

    def predict(
        self, matrix: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(P(class 1) of the classifier, the regressor's prediction) per row."""
        leaves = self._leaf_values(matrix)
        split = self.classifier_trees
        rows = matrix.shape[0]

        def summed(baseline: float, values: NDArray[np.float64]) -> NDArray[np.float64]:
            # cumsum adds left to right, as scikit-learn adds tree after tree to the baseline.
            column = np.full((rows, 1), baseline)
            return np.asarray(np.cumsum(np.hstack([column, values]), axis=1)[:, -1])

        raw = summed(self.classifier_baseline, leaves[:, :split])
        return (
            np.asarray(expit(raw), dtype=np.float64),
            summed(self.regressor_baseline, leaves[:, split:]),
        )
