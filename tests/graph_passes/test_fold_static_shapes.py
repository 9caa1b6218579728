"""fold_static_shapes: constant Slices become Splits, Squeeze/Unsqueeze a constant Reshape, Shape of
a static tensor a constant; ONNX Runtime outputs are bit-identical."""

from tests.graph_passes.helpers import apply, assert_same_outputs, ops
from trtforge.graph_passes.cleanup import CleanupPass
from trtforge.graph_passes.fold_constants import FoldConstantsPass
from trtforge.graph_passes.fold_static_shapes import FoldStaticShapesPass

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'

UNBIND = (
    HEAD
    + """
g (float16[3,1,4,8] x) => (float16[1,4,8] q, float16[1,4,8] k, float16[1,4,8] v) {
  ax = Constant<value = int64[1] {0}>()
  s0 = Constant<value = int64[1] {0}>()
  s1 = Constant<value = int64[1] {1}>()
  s2 = Constant<value = int64[1] {2}>()
  s3 = Constant<value = int64[1] {3}>()
  a = Slice(x, s0, s1, ax)
  b = Slice(x, s1, s2, ax)
  c = Slice(x, s2, s3, ax)
  q = Squeeze(a, ax)
  k = Squeeze(b, ax)
  v = Squeeze(c, ax)
}"""
)


def test_unbind_becomes_one_split_and_reshapes():
    before, after, modified, _ = apply(UNBIND, FoldStaticShapesPass())
    assert modified
    assert sorted(ops(after)) == ["Reshape", "Reshape", "Reshape", "Split"]
    assert_same_outputs(before, after)


def test_overlapping_negative_and_multi_axis_slices():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[6,5] x) => (float[4,5] a, float[3,5] b, float[2,3] c, float[6,5] d) {
      s0 = Constant<value = int64[1] {0}>()
      e4 = Constant<value = int64[1] {4}>()
      s3 = Constant<value = int64[1] {-3}>()
      big = Constant<value = int64[1] {100}>()
      a = Slice(x, s0, e4)
      b = Slice(x, s3, big)
      st = Constant<value = int64[2] {1, 1}>()
      en = Constant<value = int64[2] {3, 4}>()
      ax = Constant<value = int64[2] {0, 1}>()
      c = Slice(x, st, en, ax)
      d = Slice(x, s0, big)
    }""",
        FoldStaticShapesPass(),
    )
    assert modified and "Slice" not in ops(after)
    assert_same_outputs(before, after)


def test_strided_slice_is_left_alone():
    _, after, modified, _ = apply(
        HEAD
        + """
    g (float[6] x) => (float[3] y) {
      s = Constant<value = int64[1] {0}>()
      e = Constant<value = int64[1] {6}>()
      a = Constant<value = int64[1] {0}>()
      st = Constant<value = int64[1] {2}>()
      y = Slice(x, s, e, a, st)
    }""",
        FoldStaticShapesPass(),
        CleanupPass(),
    )
    assert not modified and "Slice" in ops(after) and "Split" not in ops(after)


def test_shape_arithmetic_folds_away_with_fold_constants():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3,4] x) => (float[6,4] y) {
      s = Shape(x)
      i = Constant<value = int64[1] {2}>()
      last = Gather(s, i)
      m = Constant<value = int64[1] {-1}>()
      shp = Concat<axis = 0>(m, last)
      y = Reshape(x, shp)
    }""",
        FoldStaticShapesPass(),
        FoldConstantsPass(),
    )
    assert modified and ops(after) == ["Reshape"]
    assert_same_outputs(before, after)


def test_nothing_to_do_is_not_modified():
    _, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3] x) => (float[2,3] y) {
      y = Relu(x)
    }""",
        FoldStaticShapesPass(),
    )
    assert not modified and ops(after) == ["Relu"]


def test_the_same_slice_twice_reads_one_piece():
    """Found by the property test: two equal Slices of one tensor must not claim one Split piece."""
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[4,6] x) => (float[1,6] a, float[1,6] b, float[1,6] c) {
      s = Constant<value = int64[1] {0}>()
      e = Constant<value = int64[1] {1}>()
      a = Slice(x, s, e)
      b = Slice(x, s, e)
      t = Slice(x, s, e)
      c = Neg(t)
    }""",
        FoldStaticShapesPass(),
        CleanupPass(),
    )
    assert modified and "Slice" not in ops(after) and ops(after).count("Split") == 1
    assert_same_outputs(before, after)
