"""remove_identities: Identity, Dropout, no-op Cast and exact cancelling Cast pairs go; a lossy
Cast pair stays; outputs are bit-identical under ONNX Runtime."""

from tests.graph_passes.helpers import apply, assert_same_outputs, ops
from trtforge.graph_passes.remove_identities import RemoveIdentitiesPass

HEAD = '<ir_version: 10, opset_import: ["" : 20]>\n'


def test_removes_identity_dropout_noop_cast_and_cancelling_pair():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float16[2,3] x) => (float16[2,3] y) {
      a = Identity(x)
      b = Dropout(a)
      c = Cast<to = 10>(b)
      d = Cast<to = 1>(c)
      e = Cast<to = 10>(d)
      y = Relu(e)
    }""",
        RemoveIdentitiesPass(),
    )
    assert modified
    assert ops(after) == ["Relu"]
    assert_same_outputs(before, after)


def test_keeps_lossy_cast_pair():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3] x) => (float[2,3] y) {
      a = Cast<to = 10>(x)
      b = Cast<to = 1>(a)
      y = Relu(b)
    }""",
        RemoveIdentitiesPass(),
    )
    assert not modified  # float32 -> float16 -> float32 rounds: not an identity
    assert ops(after) == ["Cast", "Cast", "Relu"]


def test_identity_before_graph_output_keeps_the_output_name():
    before, after, modified, _ = apply(
        HEAD
        + """
    g (float[2,3] x) => (float[2,3] y, float[2,3] z) {
      r = Relu(x)
      y = Identity(r)
      z = Neg(r)
    }""",
        RemoveIdentitiesPass(),
    )
    assert modified and "Identity" not in ops(after)
    assert [o.name for o in after.graph.output] == ["y", "z"]
    assert_same_outputs(before, after)


def test_identity_from_input_to_output_stays():
    _, after, modified, _ = apply(
        HEAD
        + """
    g (float[2] x) => (float[2] y) {
      y = Identity(x)
    }""",
        RemoveIdentitiesPass(),
    )
    assert not modified and ops(after) == ["Identity"]


def test_nothing_to_do_is_not_modified():
    _, after, modified, pipe = apply(
        HEAD
        + """
    g (float[2] x) => (float[2] y) {
      y = Relu(x)
    }""",
        RemoveIdentitiesPass(),
    )
    assert not modified and not pipe.reports[0].modified and ops(after) == ["Relu"]


def test_dropout_whose_mask_is_read_stays():
    _, after, modified, _ = apply(
        HEAD
        + """
    g (float[2] x) => (float[2] y, bool[2] m) {
      y, m = Dropout(x)
    }""",
        RemoveIdentitiesPass(),
    )
    assert not modified and ops(after) == ["Dropout"]
