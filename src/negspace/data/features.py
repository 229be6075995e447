"""Side features as dense float matrices: numeric columns standardised, categorical ones one-hot.

The encoder is fitted once on the training catalogue and stored as JSON (vocabularies, means and
standard deviations), so a cold-start user is encoded exactly as the training users were.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from negspace.errors import NegspaceError, did_you_mean

MAX_VOCABULARY = 100  # most frequent values kept per categorical column; the rest encode as zeros
MAX_CHECKED_VALUES = 1000  # a column with at most this many values records them to check inputs
MAX_UNIQUE_SHARE = 0.5  # a column with more distinct values than this share of rows is an identifier


class FeatureEncoder:
    """Args:
        columns: encoded columns, each {"name", "kind": "numeric", "mean", "std"} or
            {"name", "kind": "category", "vocabulary": [...]} (from `fit` or `from_json`).
    """

    def __init__(self, columns: list[dict[str, Any]]) -> None:
        self.columns = columns

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "FeatureEncoder":
        """Chooses and fits the columns of `frame` (rows with missing features may be all-NaN).

        Identifier-like columns (zip codes, titles: more distinct values than half the rows) and
        constant ones are dropped; categorical values seen once are not in the vocabulary.
        """
        columns: list[dict[str, Any]] = []
        known = frame.dropna(how="all")
        for name in frame.columns:
            col = known[name]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                values = col.to_numpy(np.float64)
                values = values[np.isfinite(values)]
                if len(values) and values.std() > 0:
                    columns.append({"name": str(name), "kind": "numeric",
                                    "mean": float(values.mean()), "std": float(values.std())})
                continue
            counts = col.dropna().astype(str).value_counts()
            if len(counts) < 2 or len(counts) > MAX_UNIQUE_SHARE * max(len(col), 1):
                continue
            vocabulary = counts[counts >= 2].index[:MAX_VOCABULARY].tolist()
            if vocabulary:  # "values": every value seen, the valid inputs of a new user
                column = {"name": str(name), "kind": "category", "vocabulary": vocabulary}
                if len(counts) <= MAX_CHECKED_VALUES:
                    column["values"] = sorted(counts.index.tolist())
                columns.append(column)
        return cls(columns)

    @property
    def width(self) -> int:
        return sum(1 if c["kind"] == "numeric" else len(c["vocabulary"]) for c in self.columns)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """[len(frame), width] float32; missing numbers encode as the mean (0), unknown or missing
        categories as all zeros."""
        missing = [c["name"] for c in self.columns if c["name"] not in frame.columns]
        if missing:
            raise NegspaceError(f"side features lack column(s) {', '.join(missing)}")
        blocks = []
        for c in self.columns:
            col = frame[c["name"]]
            if c["kind"] == "numeric":
                values = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
                z = (values - c["mean"]) / c["std"]
                blocks.append(np.where(np.isfinite(z), z, 0.0)[:, None])
            else:
                position = {v: j for j, v in enumerate(c["vocabulary"])}
                hot = np.zeros((len(frame), len(c["vocabulary"])))
                codes = np.array([position.get(str(v), -1) if pd.notna(v) else -1 for v in col])
                rows = np.flatnonzero(codes >= 0)
                hot[rows, codes[rows]] = 1.0
                blocks.append(hot)
        if not blocks:
            return np.zeros((len(frame), 0), np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def check(self, features: Mapping[str, Any], what: str = "user") -> None:
        """Refuses, in one line naming the valid ones, a feature this encoder does not read or a
        value it never saw (a category outside the training values, a number that is not one);
        a missing feature or None is allowed (it encodes as unknown).

        Args:
            features: {column: value} of one new user (or item).
            what: "user" or "item", for the message.
        """
        names = [c["name"] for c in self.columns]
        for key in features:
            if key not in names:
                raise NegspaceError(
                    f"unknown {what} feature {key!r}; this run's {what} features are "
                    f"{', '.join(names) or 'none'}{did_you_mean(str(key), names, {})}")
        for c in self.columns:
            value = features.get(c["name"])
            if value is None:
                continue
            if c["kind"] == "numeric":
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not np.isfinite(value):
                    raise NegspaceError(f"{what} feature {c['name']!r} is a number; got {value!r}")
                continue
            if "values" not in c:  # too many to record (or an older run): not checked
                continue
            valid = [str(v) for v in c["values"]]
            if str(value) not in valid:
                shown = ", ".join(valid[:20]) + (f", ... ({len(valid)} in all)"
                                                  if len(valid) > 20 else "")
                raise NegspaceError(f"{what} feature {c['name']!r} has no value {value!r}; the "
                                    f"training data hold {shown}")

    def to_json(self) -> list[dict[str, Any]]:
        return self.columns

    @classmethod
    def from_json(cls, columns: list[dict[str, Any]]) -> "FeatureEncoder":
        return cls(columns)


def encode_side_features(frame: pd.DataFrame | None) -> tuple[np.ndarray | None, FeatureEncoder | None]:
    """Fits an encoder on `frame` and encodes it; (None, None) without features or usable columns."""
    if frame is None:
        return None, None
    encoder = FeatureEncoder.fit(frame)
    if encoder.width == 0:
        return None, None
    return encoder.transform(frame), encoder
