"""The model as serving uses it: XGBoost's native file plus its metadata.

Loading never unpickles anything: the booster comes from ``model.ubj`` (UBJSON,
data only) and everything else from ``metadata.json``. This module imports only
numpy and xgboost, so the inference Lambda's cold start stays short; checking the
file's sha256 against the metadata is the registry's job before it builds a
package (``credit_risk.registry``).

Prediction is built for small batches (one customer, or a hundred): the rows
become one float matrix, and ``score`` takes the probability and the reason codes
from one pass of TreeSHAP contributions (XGBoost's ``pred_contribs``). For a few
rows XGBoost's fixed cost per call (a DMatrix, its checks, its thread pool) is most
of the time, so a request's rows are scored from the trees held as arrays instead
(``_Trees``): the same margins and the same TreeSHAP contributions, in closed form.
A model is only scored that way once it has given XGBoost's own answers, within
float precision, on probe rows made of its thresholds (values at them, just below,
beyond, and missing), checked at load; a model the arrays do not cover (not plain
numeric trees, or too large to table) and large batches (training, evaluation) go
to XGBoost.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from credit_risk.errors import CreditRiskError, InvalidInputError
from credit_risk.model.reasons import MAX_REASONS, Reason, reason_dicts, row_reasons

logger = logging.getLogger(__name__)

# One thread: for a few rows, thread start-up costs more than it saves, and a
# Lambda has few vCPUs anyway.
SERVING_NTHREAD = 1

FeatureRows = np.ndarray | Sequence[Mapping[str, Any]]
# Batches up to this many (rows x table units) are scored from the arrays
# (``_Trees``); larger ones by XGBoost, whose cost per row is then lower than its
# fixed cost.
FAST_PATH_CELLS = 1 << 17
# A tree with at most this many splits (or the depth of the deepest tree, if more)
# is one unit of the table; a larger one is cut into its root-to-leaf paths.
SMALL_TREE_SPLITS = 3
# Beyond this many table rows (units x codes) a model is scored by XGBoost.
MAX_TABLE_ROWS = 1 << 20
# Probe rows the arrays must agree with XGBoost on before they serve a model (in
# one batch, and the first ``PROBE_ROWS_ALONE`` one by one, the path of one row).
PROBE_ROWS = 32
PROBE_ROWS_ALONE = 8
# Agreement with XGBoost (which works in float32) on the probe rows.
PROBE_RTOL = PROBE_ATOL = 1e-4


class ModelOutputError(CreditRiskError):
    """The model gave a non-finite score for finite features."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model {version} returned a non-finite score for finite features")


@dataclass(frozen=True)
class Score:
    default_probability: float
    decision: str  # "approve" | "decline"
    # ``Reason`` objects, or with ``score(as_dicts=True)`` their ``to_dict`` form.
    reasons: list[Reason] | list[dict[str, Any]]


class _Trees:
    """The booster's trees as arrays: margins and TreeSHAP contributions of a few
    rows in a handful of numpy operations, without XGBoost's fixed cost per call.

    Which leaf a row reaches in a tree depends only on the row's side at each of
    the tree's splits (left when the value is below the threshold, compared in
    float32 as XGBoost does; a missing value takes the split's default side). The
    trees are cut into *units* (a small tree, or one root-to-leaf path of a larger
    one) of at most ``bits`` splits; a row's sides at a unit's splits make a code,
    and a table holds, per unit and code, the unit's leaf values reached and its
    TreeSHAP contributions. Scoring rows is then: their sides at every split, one
    code per unit, one lookup per unit and a sum.

    The contributions are path-dependent TreeSHAP, what ``pred_contribs`` computes,
    tabled per leaf: the Shapley values of ``E_S(x) = sum over leaves of v *
    prod(o_i if i in S else z_i)`` over each leaf's path features ``i``, where ``o_i``
    is 1 when the row takes the path's side at every split on ``i`` and ``z_i`` is
    the product of those splits' cover ratios (child over parent). For a leaf with
    path features ``K`` (padded to the longest path's with features that always
    agree and never weigh: null players, which change no one's value):

        phi_j = v * (o_j - z_j) * sum over S of w(|S|, K) * prod_{i in S} o_i
                * prod_{i not in S, i != j} z_i,  S over the leaf's other features,

    with ``w(s, K) = s! (K - s - 1)! / K!``; the base value is the trees' expected
    value (``sum of v * prod z_i``) plus the base margin.
    """

    def __init__(self, booster: xgb.Booster, n_features: int) -> None:
        document = json.loads(bytes(booster.save_raw(raw_format="json")))
        learner = document["learner"]
        params = learner["learner_model_param"]
        gbm = learner["gradient_booster"]
        if gbm.get("name") != "gbtree":
            raise ValueError(f"booster {gbm.get('name')!r}, not gbtree")
        if int(params.get("num_class", 0)) > 1 or int(params.get("num_target", 1)) != 1:
            raise ValueError("more than one output")
        trees = gbm["model"]["trees"]
        for tree in trees:
            if any(tree["split_type"]) or tree.get("categories"):
                raise ValueError("categorical splits")
        depth = max(1, max(_depth(tree) for tree in trees))
        bits = max(depth, SMALL_TREE_SPLITS)
        if bits > 8:  # a code is a byte
            raise ValueError(f"trees of depth {depth}")
        if len(trees) << bits > MAX_TABLE_ROWS:
            raise ValueError(f"{len(trees)} trees of depth {depth}: too large to table")
        node_feature: list[int] = []
        node_threshold: list[float] = []
        node_default_left: list[bool] = []
        # Per leaf: its value, its unit, its steps (the split's bit in the unit's
        # code, the side taken, the feature) and per path feature the product of
        # the steps' cover ratios.
        leaf_value: list[float] = []
        leaf_unit: list[int] = []
        leaf_steps: list[list[tuple[int, bool, int]]] = []
        leaf_zero: list[dict[int, float]] = []
        unit_nodes: list[list[int]] = []
        for tree in trees:
            left, right = tree["left_children"], tree["right_children"]
            feature, condition = tree["split_indices"], tree["split_conditions"]
            default_left, cover = tree["default_left"], tree["sum_hessian"]
            splits = {}
            for node, child in enumerate(left):
                if child != -1:
                    f = int(feature[node])
                    if not 0 <= f < n_features:
                        raise ValueError(f"a split on feature {f}")
                    splits[node] = len(node_feature)
                    node_feature.append(f)
                    node_threshold.append(condition[node])
                    node_default_left.append(bool(default_left[node]))
            small = len(splits) <= bits
            if small:  # the whole tree is one unit, its splits in node order
                unit_nodes.append(list(splits.values()))
                bit_of = {node: i for i, node in enumerate(splits)}
            stack: list[tuple[int, list[tuple[int, bool, int]], dict[int, float]]] = [(0, [], {})]
            while stack:
                node, steps, zero = stack.pop()
                if left[node] != -1:
                    f = int(feature[node])
                    for child, goes_left in ((left[node], True), (right[node], False)):
                        ratio = cover[child] / cover[node] if cover[node] else 0.0
                        step = (node, goes_left, f)
                        stack.append((child, [*steps, step], {**zero, f: zero.get(f, 1.0) * ratio}))
                    continue
                if small:
                    leaf_unit.append(len(unit_nodes) - 1)
                    steps = [(bit_of[n], side, f) for n, side, f in steps]
                else:  # a unit of its own: its path's splits, root first
                    leaf_unit.append(len(unit_nodes))
                    unit_nodes.append([splits[n] for n, _, _ in steps])
                    steps = [(i, side, f) for i, (_, side, f) in enumerate(steps)]
                leaf_value.append(condition[node])
                leaf_steps.append(steps)
                leaf_zero.append(zero)
        units, leaves = len(unit_nodes), len(leaf_value)
        if units << bits > MAX_TABLE_ROWS:
            raise ValueError(f"{units} units of {bits} splits: too large to table")
        codes = 1 << bits
        width = max(1, max(len(zero) for zero in leaf_zero))  # K
        patterns = 1 << width
        steps_max = max(1, max(len(steps) for steps in leaf_steps))
        # Per leaf: path features (slots) and their cover products; per step, its
        # bit in the unit's code, its side and its slot (padding steps never disagree).
        slot_feature = np.full((leaves, width), -1, dtype=np.intp)
        slot_zero = np.ones((leaves, width))
        step_bit = np.zeros((leaves, steps_max), dtype=np.int64)
        step_left = np.zeros((leaves, steps_max), dtype=bool)
        step_slot = np.zeros((leaves, steps_max), dtype=np.int64)
        step_real = np.zeros((leaves, steps_max), dtype=bool)
        for leaf, (steps, zero) in enumerate(zip(leaf_steps, leaf_zero, strict=True)):
            slots = {f: slot for slot, f in enumerate(zero)}
            for slot, (f, z) in enumerate(zero.items()):
                slot_feature[leaf, slot], slot_zero[leaf, slot] = f, z
            for s, (bit, goes_left, f) in enumerate(steps):
                step_bit[leaf, s], step_left[leaf, s] = bit, goes_left
                step_slot[leaf, s], step_real[leaf, s] = slots[f], True
        values = np.array(leaf_value, dtype=np.float64)
        shares = _leaf_shares(values, slot_feature, slot_zero, n_features)  # (L, P, M)
        # For every code of its unit, which of the leaf's path features disagree
        # (a bit per slot), from the side each step's split sends the code.
        code = np.arange(codes)
        sides = (code[None, :, None] >> step_bit[:, None, :]) & 1  # (L, C, S)
        off = (sides.astype(bool) != step_left[:, None, :]) & step_real[:, None, :]
        cleared = np.bitwise_or.reduce(off * (1 << step_slot)[:, None, :], axis=2)  # (L, C)
        pattern = (patterns - 1) ^ cleared  # bit set: that slot agrees
        rows = np.arange(leaves)[:, None]
        unit = np.array(leaf_unit, dtype=np.intp)
        contributions = np.zeros((units, codes, n_features))
        np.add.at(contributions, unit, shares[rows, pattern])
        reached = np.zeros((units, codes))
        np.add.at(reached, unit, np.where(cleared == 0, values[:, None], 0.0))
        self.n_features = n_features
        self._float32 = struct.Struct(f"{n_features}f")  # a row rounded as XGBoost reads it
        self.units, self.codes = units, codes
        self.node_feature = np.array(node_feature, dtype=np.intp)
        self.node_threshold = np.array(node_threshold, dtype=np.float32)
        self.node_default_left = np.array(node_default_left, dtype=bool)
        self.any_default_left = bool(self.node_default_left.any())
        # A unit with fewer splits than ``bits`` pads with any split: no leaf reads
        # the padding bits, so the table is the same whatever they are.
        padded = np.zeros((units, bits), dtype=np.intp)
        for u, nodes in enumerate(unit_nodes):
            padded[u, : len(nodes)] = nodes
        # Per bit of the code, the units' splits.
        self.unit_nodes = [np.ascontiguousarray(padded[:, bit]) for bit in range(bits)]
        self.unit_offset = np.arange(units, dtype=np.intp) * codes
        self._cells = self._cell_codes(padded, [len(nodes) for nodes in unit_nodes])
        # The last column holds the base value, in the first unit's rows: summing a
        # row's entries gives every column of ``pred_contribs`` at once.
        self.table = np.zeros((units * codes, n_features + 1))
        self.table[:, :-1] = contributions.reshape(units * codes, n_features)
        self.values = reached.reshape(units * codes)
        self._first_reached = self.values[:codes].copy()
        # Each tree's expected value over its training data (cover-weighted).
        self.expected = float((values * slot_zero.prod(axis=1)).sum())
        self.base_margin = 0.0  # set by ``calibrate``

    def _cell_codes(
        self, padded: np.ndarray, sizes: list[int]
    ) -> list[tuple[list[float], list[int]]]:
        """For one row at a time, per feature: its thresholds in order and, for each
        cell they cut the feature into (below the first, ..., from the last on, then
        missing), the units' code bits set by the feature's splits, as one integer
        with a byte per unit. A row's codes are the OR of its cells' integers: each
        bit of a code comes from one split, so from one feature."""
        units, bits = padded.shape
        used = np.arange(bits) < np.array(sizes)[:, None]  # (units, bits): real splits
        cells = []
        for f in range(self.n_features):
            thresholds = np.unique(self.node_threshold[self.node_feature == f])
            rank = np.searchsorted(thresholds, self.node_threshold)  # per split
            codes = np.zeros((len(thresholds) + 2, units), dtype=np.uint8)
            cell = np.arange(len(thresholds) + 1)[:, None]
            for bit in range(bits):
                nodes = padded[:, bit]
                mine = used[:, bit] & (self.node_feature[nodes] == f)
                # In cell c a value is below exactly the thresholds ranked c and up.
                codes[:-1] |= ((rank[nodes] >= cell) & mine).astype(np.uint8) << bit
                codes[-1] |= (self.node_default_left[nodes] & mine).astype(np.uint8) << bit
            cells.append(
                (thresholds.tolist(), [int.from_bytes(row.tobytes(), "little") for row in codes])
            )
        return cells

    def fits(self, rows: int) -> bool:
        return rows * self.units <= FAST_PATH_CELLS

    def row_contributions(self, row: list[float]) -> list[list[float]]:
        """``contributions`` of one row of plain floats (NaN for missing), as plain
        floats: the row's float32 values without numpy."""
        try:
            row32 = self._float32.unpack(self._float32.pack(*row))
        except (OverflowError, struct.error):  # beyond float32: numpy rounds to inf
            row32 = np.array(row, dtype=np.float32).tolist()
        found = self.table.take(self._row_index(row32)[0], axis=0)
        return [np.add.reduce(found, axis=0).tolist()]

    def _row_index(self, values: Sequence[float]) -> np.ndarray:
        """``_index`` of one row (float32 values), in plain Python but for the last
        step: a handful of numpy calls instead of a score of them."""
        code = 0
        for value, (thresholds, cells) in zip(values, self._cells, strict=True):
            code |= cells[-1] if value != value else cells[bisect_right(thresholds, value)]
        codes = np.frombuffer(code.to_bytes(self.units, "little"), dtype=np.uint8)
        return (codes + self.unit_offset)[None, :]

    def _index(self, matrix: np.ndarray) -> np.ndarray:
        """Per row and unit, the row's entry in the table."""
        if len(matrix) == 1:
            return self._row_index(matrix.astype(np.float32).tolist()[0])
        values = matrix.astype(np.float32)[:, self.node_feature]
        goes_left = values < self.node_threshold  # NaN compares false: right
        if self.any_default_left:
            missing = values != values
            if missing.any():
                goes_left |= missing & self.node_default_left
        # A unit's sides, bit i for its i-th split, as one byte per row and unit.
        sides = goes_left.view(np.uint8)
        codes = sides[:, self.unit_nodes[0]]
        for bit in range(1, len(self.unit_nodes)):
            codes |= sides[:, self.unit_nodes[bit]] << bit
        return codes + self.unit_offset

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        return self.values.take(self._index(matrix)).sum(axis=1)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        # Entries unit by unit (units x rows x columns), summed a unit at a time:
        # contiguous, unlike a sum over the middle axis.
        return np.add.reduce(self.table.take(self._index(matrix).T, axis=0), axis=0)

    def calibrate(self, booster: xgb.Booster, feature_names: Sequence[str]) -> bool:
        """Takes the base margin from XGBoost and checks both margins and
        contributions against XGBoost's on probe rows: thresholds, values just
        below them and missing values, for every feature. False when they differ."""
        rng = np.random.default_rng(0)
        probe = np.empty((PROBE_ROWS, self.n_features))
        for f in range(self.n_features):
            thresholds = np.unique(self.node_threshold[self.node_feature == f])
            below = np.nextafter(thresholds, np.float32(-np.inf))
            ends = [thresholds.min() - 1, thresholds.max() + 1] if len(thresholds) else [0.0]
            pool = np.concatenate([thresholds, below, ends, [np.nan]]).astype(np.float32)
            probe[:, f] = rng.choice(pool, size=PROBE_ROWS)
        dmatrix = xgb.DMatrix(
            probe, missing=np.nan, feature_names=list(feature_names), nthread=SERVING_NTHREAD
        )
        expected = booster.predict(dmatrix, pred_contribs=True).astype(np.float64)
        margin = booster.inplace_predict(probe, predict_type="margin", missing=np.nan)
        if not (np.isfinite(expected).all() and np.isfinite(margin).all()):
            return False
        self.base_margin = float(expected[0, -1]) - self.expected
        first = slice(0, self.codes)  # the first unit's rows
        self.table[first, -1] = self.base_margin + self.expected
        self.values[first] = self._first_reached + self.base_margin
        close = {"rtol": PROBE_RTOL, "atol": PROBE_ATOL}
        alone = [self.row_contributions(row)[0] for row in probe[:PROBE_ROWS_ALONE].tolist()]
        return bool(
            np.allclose(self.contributions(probe), expected, **close)
            and np.allclose(alone, expected[:PROBE_ROWS_ALONE], **close)
            and np.allclose(self.margin(probe), margin, **close)
        )


def _depth(tree: Mapping[str, Any]) -> int:
    """The number of splits on the tree's longest root-to-leaf path."""
    left, right = tree["left_children"], tree["right_children"]
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, depth)
        else:
            stack += [(left[node], depth + 1), (right[node], depth + 1)]
    return deepest


def _leaf_shares(
    values: np.ndarray, slot_feature: np.ndarray, slot_zero: np.ndarray, n_features: int
) -> np.ndarray:
    """Each leaf's TreeSHAP contributions (leaves x agreement patterns x features),
    a pattern's bit ``i`` set when the row agrees with the leaf's path feature ``i``."""
    leaves, width = slot_zero.shape
    patterns = 1 << width
    agree = ((np.arange(patterns)[:, None] >> np.arange(width)) & 1).astype(np.float64)
    weight = [
        math.factorial(s) * math.factorial(width - s - 1) / math.factorial(width)
        for s in range(width)
    ]
    shares = np.zeros((leaves, patterns, n_features))
    rows = np.arange(leaves)[:, None]
    for j in range(width):
        others = [i for i in range(width) if i != j]
        total = np.zeros((leaves, patterns))
        for subset in range(1 << len(others)):
            term = np.full((leaves, patterns), weight[bin(subset).count("1")])
            for position, i in enumerate(others):
                term *= agree[None, :, i] if subset >> position & 1 else slot_zero[:, i, None]
            total += term
        share = values[:, None] * (agree[None, :, j] - slot_zero[:, j, None]) * total
        real = slot_feature[:, j] >= 0
        shares[rows[real], np.arange(patterns)[None, :], slot_feature[real, j][:, None]] += share[
            real
        ]
    return shares


class ModelPackage:
    """A trained model ready to score: probabilities, decisions and reasons."""

    def __init__(self, booster: xgb.Booster, metadata: Mapping[str, Any]) -> None:
        self._booster = booster
        self.metadata = dict(metadata)
        try:
            self.feature_names: tuple[str, ...] = tuple(metadata["feature_names"])
            self.threshold: float = float(metadata["threshold"]["value"])
            self.version: str = str(metadata["version"])
            self.model_name: str = str(metadata["model_name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"model metadata is incomplete: {exc!r}") from exc
        if booster.num_features() != len(self.feature_names):
            raise InvalidInputError(
                f"the model file expects {booster.num_features()} features, the metadata "
                f"lists {len(self.feature_names)}"
            )
        self._trees = self._fast_trees()
        # Column order of rows given by name (``matrix_from``), per order of names.
        self._columns: dict[tuple[str, ...], list[int]] = {}

    def _fast_trees(self) -> _Trees | None:
        """The trees as arrays, once they give XGBoost's answers (else None: every
        row goes to XGBoost, which is never wrong, only slower for a few rows)."""
        try:
            trees = _Trees(self._booster, len(self.feature_names))
            if trees.calibrate(self._booster, self.feature_names):
                return trees
            reason = "its answers differ from XGBoost's on the probe rows"
        except Exception as exc:  # whatever the arrays cannot take, XGBoost scores
            reason = f"{type(exc).__name__}: {exc}"
        logger.warning("model %s is scored by XGBoost for every row: %s", self.version, reason)
        return None

    @classmethod
    def from_bytes(cls, model_bytes: bytes, metadata: Mapping[str, Any]) -> ModelPackage:
        booster = xgb.Booster(params={"nthread": SERVING_NTHREAD})
        try:
            booster.load_model(bytearray(model_bytes))
        except xgb.core.XGBoostError as exc:
            raise InvalidInputError(f"not an XGBoost model file: {exc}") from exc
        booster.set_param({"nthread": SERVING_NTHREAD})
        return cls(booster, metadata)

    def to_matrix(self, rows: FeatureRows) -> np.ndarray:
        """Feature rows (mappings by feature name, None for null, or a float matrix
        in model order) as a float64 matrix with NaN for missing values."""
        if isinstance(rows, np.ndarray):
            matrix = rows.astype(np.float64, copy=False)
        elif len(rows) == 0:
            matrix = np.empty((0, len(self.feature_names)))
        else:
            try:
                matrix = np.array(
                    [[row[name] for name in self.feature_names] for row in rows],
                    dtype=np.float64,
                )
            except KeyError as exc:
                raise InvalidInputError(f"a feature row lacks {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"feature values must be numbers or null: {exc}") from None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise InvalidInputError(
                f"expected rows of {len(self.feature_names)} features "
                f"({', '.join(self.feature_names)}), got shape {matrix.shape}"
            )
        return matrix

    def matrix_from(
        self, values: Sequence[Sequence[float | None]], names: Sequence[str]
    ) -> np.ndarray:
        """Rows of values in the order ``names`` (None for null) as the model's
        float matrix: ``to_matrix`` of the same rows as mappings by name, without
        building the mappings."""
        columns = self._columns_of(names)
        if not values:
            return np.empty((0, len(self.feature_names)))
        try:
            matrix = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"feature values must be numbers or null: {exc}") from None
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise InvalidInputError(f"expected rows of {len(names)} values, got {matrix.shape}")
        if columns != list(range(len(names))):
            matrix = matrix[:, columns]
        return matrix

    def _columns_of(self, names: Sequence[str]) -> list[int]:
        """Where each of the model's features is among ``names`` (kept per order)."""
        names = tuple(names)
        columns = self._columns.get(names)
        if columns is None:
            missing = [name for name in self.feature_names if name not in names]
            if missing:
                raise InvalidInputError(f"a feature row lacks {missing[0]!r}")
            columns = self._columns[names] = [names.index(name) for name in self.feature_names]
        return columns

    def margin(self, rows: FeatureRows) -> np.ndarray:
        """Log-odds of default, before the sigmoid."""
        matrix = self.to_matrix(rows)
        if len(matrix) == 0:
            return np.empty(0)
        if self._trees is not None and self._trees.fits(len(matrix)):
            return self._finite(self._trees.margin(matrix))
        margin = self._booster.inplace_predict(matrix, predict_type="margin", missing=np.nan)
        return self._finite(margin)

    def predict(self, rows: FeatureRows) -> np.ndarray:
        """Probabilities of default, one per row."""
        return 1.0 / (1.0 + np.exp(-self.margin(rows)))

    def contributions(self, rows: FeatureRows) -> np.ndarray:
        """Per-feature log-odds contributions; the last column is the base value.
        Each row sums to the row's margin."""
        return self._finite(self._contributions(self.to_matrix(rows)))

    def _contributions(self, matrix: np.ndarray) -> np.ndarray:
        """``contributions`` of a matrix, not checked for non-finite values yet."""
        if len(matrix) == 0:
            return np.empty((0, len(self.feature_names) + 1))
        if self._trees is not None and self._trees.fits(len(matrix)):
            return self._trees.contributions(matrix)
        # One thread here too: building even a one-row DMatrix on the default
        # thread pool costs milliseconds when the CPU is shared.
        dmatrix = xgb.DMatrix(
            matrix,
            missing=np.nan,
            feature_names=list(self.feature_names),
            nthread=SERVING_NTHREAD,
        )
        return self._booster.predict(dmatrix, pred_contribs=True)

    def _finite(self, values: np.ndarray) -> np.ndarray:
        """The model's output, refused when not finite. Inputs are finite by then
        (the store's rows are checked), so a NaN here is a broken model file; it
        must not pass as a score: ``NaN >= threshold`` is false, an approval."""
        if not np.isfinite(values).all():
            raise ModelOutputError(self.version)
        return values

    def reasons(self, rows: FeatureRows, top_k: int = MAX_REASONS) -> list[list[Reason]]:
        """For each row, the features that raised its risk the most, in words (a
        decline always has one; which reasons depends on the decision)."""
        return [score.reasons for score in self.score(rows, top_k)]

    def decide(self, probabilities: np.ndarray | Sequence[float]) -> list[str]:
        threshold = self.threshold
        if isinstance(probabilities, np.ndarray):
            probabilities = probabilities.tolist()
        return ["decline" if p >= threshold else "approve" for p in probabilities]

    def score(
        self, rows: FeatureRows, top_k: int = MAX_REASONS, *, as_dicts: bool = False
    ) -> list[Score]:
        """Probability, decision and reasons per row; ``as_dicts``: the reasons as
        the API serves them (``Reason.to_dict``), without building the objects."""
        matrix = self.to_matrix(rows)
        return self._scored(self._contributions(matrix), matrix.tolist(), top_k, as_dicts)

    def score_values(
        self,
        values: Sequence[Sequence[float | None]],
        names: Sequence[str],
        top_k: int = MAX_REASONS,
        *,
        as_dicts: bool = False,
    ) -> list[Score]:
        """``score`` of rows of values in the order ``names`` (None for null), as a
        store gives them: the model takes its features by name. One row (a single
        score) skips the matrix altogether."""
        if len(values) != 1 or self._trees is None:
            matrix = self.matrix_from(values, names)
            return self._scored(self._contributions(matrix), matrix.tolist(), top_k, as_dicts)
        columns = self._columns_of(names)
        try:
            row = [math.nan if values[0][c] is None else float(values[0][c]) for c in columns]
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"feature values must be numbers or null: {exc}") from None
        return self._scored(self._trees.row_contributions(row), [row], top_k, as_dicts)

    def _scored(
        self,
        contributions: np.ndarray | list[list[float]],
        values: list[list[float]],
        top_k: int,
        as_dicts: bool,
    ) -> list[Score]:
        # Plain floats from here: numpy's cost per call is most of the work on a
        # row of six values.
        if isinstance(contributions, np.ndarray):
            contributions = contributions.tolist()
        names, threshold = self.feature_names, self.threshold
        explain = reason_dicts if as_dicts else row_reasons
        scores = []
        for row, value in zip(contributions, values, strict=True):
            # The contributions add up to the margin: one pass over the trees gives
            # both the probability and the reasons. A non-finite contribution makes
            # the margin non-finite (see ``_finite``).
            margin = sum(row)
            if not math.isfinite(margin):
                raise ModelOutputError(self.version)
            probability = _sigmoid(margin)
            decline = probability >= threshold
            scores.append(
                Score(
                    default_probability=probability,
                    decision="decline" if decline else "approve",
                    reasons=explain(row[:-1], value, names, top_k, decline=decline),
                )
            )
        return scores


def _sigmoid(margin: float) -> float:
    """The probability of a (finite) log-odds margin, without overflow."""
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    odds = math.exp(margin)
    return odds / (1.0 + odds)
