"""The learned subscription model: a calibrated P(rebuy within the horizon) and the next-purchase
interval of each (customer, product) pair, and its safe on-disk artifact.

Model 1 (`classifier` + calibration): gradient-boosted trees give a raw probability that the
customer buys the product within `horizon_days` of the analysis day; an isotonic map fitted on a
later, held-out snapshot turns it into a calibrated probability. The user-facing confidence is
that probability x 100: "80" means such pairs were rebought within the horizon 80% of the time.

Model 2 (`interval_regressor`): when the next purchase comes, given that it comes within the
horizon. With model 1 this is a two-part (hurdle) model of the time T from the analysis day to
the next purchase: model 1 gives P(T < H), model 2 the median of T given T < H, learnt by median
(quantile 0.5) gradient boosting on the training pairs that were rebought within the horizon.
Censoring is handled by construction: whether T < H is known for every training pair (each
snapshot is followed by at least H observed days), and T itself is only ever used where it was
observed, so no open gap is mistaken for a finished one. The predicted interval, from the last
purchase to the next, is days since the last purchase + that median (at most + H). It knows the
shopper has not rebought since the last purchase, which a mean gap ignores. The unconditional
median of T is not reported: for a pair with P(T < H) < 0.5 it lies beyond the horizon, where
the snapshots observe nothing reliable. (A median regression of T capped at 2H, tried first,
scored MAE 32.7 d and 11% within 7 d on Complete Journey's rebought pairs at day 336, against
6.8 d and 55% for this formulation.)

Artifact (`save` / `load`): a directory with `model.skops` (skops format: no pickle, loading
never runs code from the file, and only the types in TRUSTED_TYPES are rebuilt) and
`model_card.json` (training cutoff, data set and SHA-256 of its columns, features, validation
metrics, library versions, SHA-256 of the skops file). The skops file also embeds the card (less
its own hash), so a changed byte in either file is refused with FailedPrecondition. The hashes
detect corruption and edits, not a forger who rewrites both files: the trusted-types list is
what keeps a hostile file from running code.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from numpy.typing import NDArray
from pantree.domain.v1 import analysis_pb2, product_pb2
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from pantree_common.domain import dates
from pantree_common.errors import FailedPrecondition
from services.recommendation.features import (
    COLD_START_PURCHASE_DAYS,
    FEATURE_NAMES,
    Columns,
    Priors,
    columns_from_analysis,
    feature_matrix,
)
from services.recommendation.forest import SMALL_ROWS, Forest

HORIZON_DAYS = 28
TIE_BREAK = 1e-6
"""Weight of the raw probability in the ranking score: it orders pairs the calibration map
gives equal probabilities (at its flat ends) without changing any other order."""
ARTIFACT_FILE = "model.skops"
CARD_FILE = "model_card.json"
ARTIFACT_FORMAT = "pantree-subscription-model"
FORMAT_VERSION = 1

TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.tuple",
        "numpy.ndarray",
        "numpy.random._generator.Generator",
        "numpy.uint64",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.PinballLoss",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.preprocessing._label.LabelEncoder",
    }
)
"""Every type a Pantree artifact may contain, listed explicitly (as scikit-learn 1.9 writes
it). A file naming any other type is refused before skops rebuilds anything, even a type skops
would trust by default; only these are passed to skops as trusted."""


@dataclass(frozen=True)
class ModelInfo:
    """Where a model came from: what its card reports."""

    dataset: str
    training_cutoff_epoch_day: int
    """First day not used for training: the model saw events strictly before it."""
    data_sha256: str
    """SHA-256 of the training data's columns (customer, item, day, quantity, price)."""
    data_events: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Validation metrics, measured on held-out customers of the last snapshot before the
    cutoff."""
    training: Mapping[str, Any] = field(default_factory=dict)
    """How it was trained: snapshots, rows, hyper-parameters."""


@dataclass(frozen=True, eq=False)
class Predictions:
    """One value per scored (customer, product) row."""

    p_rebuy: NDArray[np.float64]
    """Calibrated probability of a purchase within the horizon."""
    confidence: NDArray[np.float64]
    """p_rebuy x 100, the user-facing confidence 0-100."""
    interval_days: NDArray[np.float64]
    """Predicted days from the last purchase to the next one, given that it falls within the
    horizon (model 2)."""
    score: NDArray[np.float64]
    """Ranking score: p_rebuy, plus frequency_weight x trip share when that ranked better."""
    cold_start: NDArray[np.bool_]
    """Fewer than COLD_START_PURCHASE_DAYS purchase days: the pair's figures lean on the learned
    category / department prior rather than a rhythm of its own."""


@dataclass(frozen=True, eq=False)
class SubscriptionModel:
    """Calibrated rebuy probability (model 1) and next-purchase interval (model 2)."""

    classifier: HistGradientBoostingClassifier
    calibration_x: NDArray[np.float64]
    """Isotonic calibration: raw probabilities (ascending) ..."""
    calibration_y: NDArray[np.float64]
    """... and the calibrated probabilities they map to; linear in between, flat outside."""
    interval_regressor: HistGradientBoostingRegressor
    priors: Priors
    info: ModelInfo
    horizon_days: int = HORIZON_DAYS
    frequency_weight: float = 0.0
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __post_init__(self) -> None:
        """Flatten the trees when the model is loaded, not on the first request."""
        _ = self.forest

    @cached_property
    def forest(self) -> Forest | None:
        """Both ensembles flattened for small matrices (services.recommendation.forest)."""
        return Forest.of(self.classifier, self.interval_regressor)

    def _raw_scores(
        self, matrix: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Model 1 before calibration and model 2, per row; the same numbers either way."""
        if not matrix.shape[0]:
            return np.empty(0), np.empty(0)
        if self.forest is not None and matrix.shape[0] <= SMALL_ROWS:
            return self.forest.predict(matrix)
        raw = np.asarray(self.classifier.predict_proba(matrix)[:, 1], dtype=np.float64)
        return raw, np.asarray(self.interval_regressor.predict(matrix), dtype=np.float64)

    def calibrate(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.clip(np.interp(raw, self.calibration_x, self.calibration_y), 0.0, 1.0)

    def predict_matrix(self, matrix: NDArray[np.float64]) -> Predictions:
        """Predictions from a feature matrix (columns in FEATURE_NAMES order)."""
        if matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"need {len(self.feature_names)} features, got {matrix.shape[1]}")
        raw, remaining = self._raw_scores(matrix)
        p_rebuy = self.calibrate(raw)
        days_since = matrix[:, self.feature_names.index("days_since_last_purchase")]
        interval = np.maximum(days_since + np.clip(remaining, 0.0, self.horizon_days), 1.0)
        trip_share = matrix[:, self.feature_names.index("trip_share")]
        purchase_days = matrix[:, self.feature_names.index("purchase_days")]
        return Predictions(
            p_rebuy=p_rebuy,
            confidence=100.0 * p_rebuy,
            interval_days=interval,
            score=p_rebuy + self.frequency_weight * trip_share + TIE_BREAK * raw,
            cold_start=purchase_days < COLD_START_PURCHASE_DAYS,
        )

    def predict(self, columns: Columns) -> Predictions:
        """Predictions for columns from features.columns_from_table / columns_from_analysis."""
        return self.predict_matrix(feature_matrix(columns, self.priors))

    def predict_analysis(
        self,
        analysis: analysis_pb2.HistoryAnalysis,
        products: Mapping[str, product_pb2.Product],
    ) -> Predictions:
        """Predictions for every item of one analysis, in the analysis' item order."""
        return self.predict(columns_from_analysis(analysis, products, self.priors))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(card: Mapping[str, Any]) -> str:
    return json.dumps(card, sort_keys=True, separators=(",", ":"), allow_nan=False)


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": _skops_version(),
    }


def _skops_version() -> str:
    try:
        return str(importlib.import_module("skops").__version__)
    except ImportError:
        return "not installed"


def _skops() -> Any:
    """skops.io, imported when an artifact is written or read (the `eval` extra installs it)."""
    try:
        return importlib.import_module("skops.io")
    except ImportError:
        raise FailedPrecondition(
            "reading or writing a model artifact needs the skops package: "
            "pip install 'pantree[eval]'"
        ) from None


def _card_body(model: SubscriptionModel) -> dict[str, Any]:
    info = model.info
    return {
        "format": ARTIFACT_FORMAT,
        "format_version": FORMAT_VERSION,
        "description": (
            "Calibrated probability that a shopper rebuys a product within the horizon "
            "(confidence = probability x 100) and the days from the last purchase to the next."
        ),
        "dataset": info.dataset,
        "training_cutoff_epoch_day": info.training_cutoff_epoch_day,
        "training_cutoff_date": dates.from_epoch_day(info.training_cutoff_epoch_day).isoformat(),
        "training_data": "events strictly before training_cutoff_date",
        "training_data_sha256": info.data_sha256,
        "training_data_events": info.data_events,
        "horizon_days": model.horizon_days,
        "frequency_weight": model.frequency_weight,
        "features": list(model.feature_names),
        "validation_metrics": dict(info.metrics),
        "validation_slice": (
            "held-out half of the customers who shop in the horizon after the last snapshot "
            "(one horizon before the cutoff); ranking over their repeat purchases, AUC / Brier / "
            "ECE / interval errors on their pairs with >= 3 purchase days"
        ),
        "training": dict(info.training),
        "libraries": library_versions(),
        "artifact_file": ARTIFACT_FILE,
    }


def _payload(model: SubscriptionModel, card_body: Mapping[str, Any]) -> dict[str, Any]:
    priors = model.priors
    return {
        "format": ARTIFACT_FORMAT,
        "format_version": FORMAT_VERSION,
        "card": _canonical(card_body),
        "classifier": model.classifier,
        "interval_regressor": model.interval_regressor,
        "calibration_x": np.asarray(model.calibration_x, dtype=np.float64),
        "calibration_y": np.asarray(model.calibration_y, dtype=np.float64),
        "priors": {
            "product_keys": [str(k) for k in priors.product_keys],
            "product_rate": np.asarray(priors.product_rate, dtype=np.float64),
            "product_interval_days": np.asarray(priors.product_interval_days, np.float64),
            "category_keys": [str(k) for k in priors.category_keys],
            "category_rate": np.asarray(priors.category_rate, dtype=np.float64),
            "category_interval_days": np.asarray(priors.category_interval_days, np.float64),
            "department_keys": [str(k) for k in priors.department_keys],
            "department_rate": np.asarray(priors.department_rate, dtype=np.float64),
            "department_interval_days": np.asarray(priors.department_interval_days, np.float64),
            "global_rate": float(priors.global_rate),
            "global_interval_days": float(priors.global_interval_days),
        },
    }


def save(model: SubscriptionModel, directory: Path | str) -> Path:
    """Write model.skops and model_card.json into `directory` (created if needed); returns the
    directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body = _card_body(model)
    artifact = directory / ARTIFACT_FILE
    sio = _skops()
    sio.dump(_payload(model, body), artifact)
    card = {**body, "artifact_sha256": _sha256_file(artifact)}
    (directory / CARD_FILE).write_text(
        json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )
    return directory


def _schema_types(artifact: Path) -> set[str]:
    """Every "module.class" the skops file's schema names (read as plain JSON: nothing is
    built)."""
    with zipfile.ZipFile(artifact) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _refuse(directory: Path, why: str) -> FailedPrecondition:
    return FailedPrecondition(f"refusing the model artifact in {directory}: {why}")


def load(directory: Path | str) -> SubscriptionModel:
    """Read an artifact written by `save`, checking it first; raises FailedPrecondition when a
    file is missing, was changed, or holds a type outside TRUSTED_TYPES."""
    directory = Path(directory)
    artifact, card_path = directory / ARTIFACT_FILE, directory / CARD_FILE
    for path in (artifact, card_path):
        if not path.is_file():
            raise _refuse(directory, f"{path.name} is missing")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(directory, f"{CARD_FILE} is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or not isinstance(card.get("artifact_sha256"), str):
        raise _refuse(directory, f"{CARD_FILE} has no artifact_sha256")
    sio = _skops()
    actual = _sha256_file(artifact)
    if actual != card["artifact_sha256"]:
        raise _refuse(
            directory,
            f"SHA-256 of {ARTIFACT_FILE} is {actual}, the card says {card['artifact_sha256']}: "
            "the file was modified or corrupted",
        )
    try:
        named = _schema_types(artifact)
        untrusted = set(sio.get_untrusted_types(file=artifact))
    except Exception as exc:  # a malformed archive: zipfile, json and skops raise various errors
        raise _refuse(directory, f"{ARTIFACT_FILE} is not a readable skops file ({exc})") from None
    unknown = sorted((named | untrusted) - TRUSTED_TYPES)
    if unknown:
        raise _refuse(directory, f"{ARTIFACT_FILE} holds types outside the trusted list: {unknown}")
    try:
        payload = sio.load(artifact, trusted=sorted(untrusted))
    except Exception as exc:
        raise _refuse(directory, f"{ARTIFACT_FILE} could not be read ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise _refuse(directory, f"{ARTIFACT_FILE} is not a {ARTIFACT_FORMAT} artifact")
    if payload.get("format_version") != FORMAT_VERSION:
        raise _refuse(
            directory,
            f"format version {payload.get('format_version')!r}, this build reads {FORMAT_VERSION}",
        )
    body = {key: value for key, value in card.items() if key != "artifact_sha256"}
    if payload.get("card") != _canonical(body):
        raise _refuse(directory, f"{CARD_FILE} differs from the card sealed in {ARTIFACT_FILE}")
    return _model_from_payload(directory, payload, json.loads(payload["card"]))


def _model_from_payload(
    directory: Path, payload: Mapping[str, Any], card: Mapping[str, Any]
) -> SubscriptionModel:
    classifier = payload.get("classifier")
    regressor = payload.get("interval_regressor")
    if not isinstance(classifier, HistGradientBoostingClassifier) or not isinstance(
        regressor, HistGradientBoostingRegressor
    ):
        raise _refuse(directory, "the estimators are not the expected types")
    features = tuple(card["features"])
    if features != FEATURE_NAMES:
        raise _refuse(
            directory, f"trained on features {list(features)}, this build computes a different list"
        )
    stored = payload["priors"]
    priors = Priors(
        product_keys=np.asarray(stored["product_keys"], dtype=np.str_),
        product_rate=np.asarray(stored["product_rate"], dtype=np.float64),
        product_interval_days=np.asarray(stored["product_interval_days"], dtype=np.float64),
        category_keys=np.asarray(stored["category_keys"], dtype=np.str_),
        category_rate=np.asarray(stored["category_rate"], dtype=np.float64),
        category_interval_days=np.asarray(stored["category_interval_days"], dtype=np.float64),
        department_keys=np.asarray(stored["department_keys"], dtype=np.str_),
        department_rate=np.asarray(stored["department_rate"], dtype=np.float64),
        department_interval_days=np.asarray(stored["department_interval_days"], dtype=np.float64),
        global_rate=float(stored["global_rate"]),
        global_interval_days=float(stored["global_interval_days"]),
    )
    info = ModelInfo(
        dataset=str(card["dataset"]),
        training_cutoff_epoch_day=int(card["training_cutoff_epoch_day"]),
        data_sha256=str(card["training_data_sha256"]),
        data_events=int(card["training_data_events"]),
        metrics=dict(card["validation_metrics"]),
        training=dict(card["training"]),
    )
    return SubscriptionModel(
        classifier=classifier,
        calibration_x=np.asarray(payload["calibration_x"], dtype=np.float64),
        calibration_y=np.asarray(payload["calibration_y"], dtype=np.float64),
        interval_regressor=regressor,
        priors=priors,
        info=info,
        horizon_days=int(card["horizon_days"]),
        frequency_weight=float(card["frequency_weight"]),
        feature_names=features,
    )
