"""The headline error per output is relative to the output's scale (max |err| / max |ref|), as the
tolerance (atol + rtol * |ref|) thinks of it; the element-wise max rel stays in the JSON only."""

from __future__ import annotations

import numpy as np

from trtforge.verify import METRIC_FORMATS
from trtforge.verify.metrics import compare

TOL = {"atol": 1e-2, "rtol": 1e-2, "max_outside": 1e-3, "min_cosine": 0.999}


def test_an_output_crossing_zero_reads_as_its_error_relative_to_its_range():
    ref = np.linspace(-1.0, 1.0, 101)  # crosses zero: 0.0 exactly at index 50
    actual = ref + 1e-3  # 0.1 % of the output range everywhere
    m = compare(actual, ref, TOL)
    assert m["ok"]
    assert abs(m["rel_err"] - 1e-3) < 1e-9
    assert m["max_rel"] > 100  # element-wise, over the 1e-6 floor at the zero crossing
    assert [k for k, _ in METRIC_FORMATS][:2] == ["max_abs", "rel_err"]


def test_an_all_zero_reference_has_no_scale():
    assert compare(np.zeros(4), np.zeros(4), TOL)["rel_err"] == 0.0
    assert compare(np.full(4, 1e-3), np.zeros(4), TOL)["rel_err"] == float("inf")
