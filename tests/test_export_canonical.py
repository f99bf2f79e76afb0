"""The canonical ONNX form: one computation, one byte string, whatever order and names the
converter chose."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.canonical import canonical_form
from export.graph import onnx_predictor, onnx_session

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "lambda_handler" / "model" / "model.onnx"


def reshuffled(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """`model` as another conversion might write it: the nodes in another topological order,
    initializers and value infos shuffled, every internal name and internal symbolic dimension
    new (those of the graph's inputs and outputs are part of the contract)."""
    rng = random.Random(seed)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    kept = {value.name for value in [*graph.input, *graph.output]}
    internal = {name for node in graph.node for name in [*node.input, *node.output] if name}
    internal |= {tensor.name for tensor in graph.initializer}
    names = {name: f"v{rng.randrange(10**9)}_{i}" for i, name in enumerate(sorted(internal - kept))}
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    needs = [{producer[n] for n in node.input if n in producer} for node in graph.node]
    order: list[int] = []
    while len(order) < len(graph.node):
        ready = [i for i in range(len(graph.node)) if i not in order and needs[i] <= set(order)]
        order.append(rng.choice(ready))
    nodes = [graph.node[i] for i in order]
    for field, items in (
        (graph.node, nodes),
        (graph.initializer, list(graph.initializer)),
        (graph.value_info, list(graph.value_info)),
    ):
        copies = [type(item)() for item in items]
        for copy, item in zip(copies, items, strict=True):
            copy.CopyFrom(item)
        if field is not graph.node:
            rng.shuffle(copies)
        del field[:]
        field.extend(copies)
    for node in graph.node:
        node.name = f"n{rng.randrange(10**9)}"
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    for item in [*graph.initializer, *graph.value_info]:
        item.name = names.get(item.name, item.name)
    symbols = {
        dim.dim_param: dim.dim_param
        for value in [*graph.input, *graph.output]
        for dim in value.type.tensor_type.shape.dim
    }
    for value in graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                new = symbols.setdefault(dim.dim_param, f"unk__{rng.randrange(10**6)}")
                dim.dim_param = new
    return result


def test_the_shipped_graph_is_in_canonical_form() -> None:
    """What the export writes: another export of the same model gives the same bytes."""
    shipped = SHIPPED_MODEL.read_bytes()
    assert canonical_form(onnx.load_from_string(shipped)).SerializeToString() == shipped


def test_reordered_and_renamed_graphs_of_one_model_get_the_same_bytes_and_scores() -> None:
    shipped = onnx.load(SHIPPED_MODEL)
    canonical = canonical_form(shipped).SerializeToString()
    tokens = np.random.default_rng(0).integers(1, 1000, size=(4, 50)).astype(np.int32)
    expected = onnx_predictor(onnx_session(shipped.SerializeToString()))(tokens)
    for seed in (1, 2):
        variant = reshuffled(shipped, seed)
        assert variant.SerializeToString() != shipped.SerializeToString()
        onnx.checker.check_model(variant, full_check=True)
        assert canonical_form(variant).SerializeToString() == canonical
    canonical_model = onnx.load_from_string(canonical)
    onnx.checker.check_model(canonical_model, full_check=True)
    np.testing.assert_array_equal(onnx_predictor(onnx_session(canonical))(tokens), expected)
    assert [v.name for v in canonical_model.graph.input] == ["tokens"]
    assert [v.name for v in canonical_model.graph.output] == ["probabilities"]


def small_graph(scale: float, unused: float | None = None) -> onnx.ModelProto:
    """`x` → Mul by a constant → Add a constant → `y`, with an optional unused constant."""
    constants = [
        numpy_helper.from_array(np.array([scale], dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "shift"),
    ]
    if unused is not None:
        constants.append(numpy_helper.from_array(np.array([unused], dtype=np.float32), "spare"))
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"], name="mul"),
            helper.make_node("Add", ["scaled", "shift"], ["y"], name="add"),
        ],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        initializer=constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_names_follow_the_canonical_order_and_constants_their_first_use() -> None:
    graph = canonical_form(small_graph(2.0, unused=5.0)).graph
    assert [(node.name, list(node.input), list(node.output)) for node in graph.node] == [
        ("Mul_0", ["x", "constant_0"], ["Mul_0"]),
        ("Add_1", ["Mul_0", "constant_1"], ["y"]),
    ]
    values = {t.name: numpy_helper.to_array(t).item() for t in graph.initializer}
    assert values == {"constant_0": 2.0, "constant_1": 1.0, "constant_2": 5.0}


def test_different_computations_keep_different_bytes() -> None:
    assert (
        canonical_form(small_graph(2.0)).SerializeToString()
        != canonical_form(small_graph(3.0)).SerializeToString()
    )


def test_a_graph_with_subgraphs_is_copied_unchanged() -> None:
    model = small_graph(2.0)
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z"])],
        "branch",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n"])],
    )
    model.graph.node.append(
        helper.make_node("If", ["x"], ["w"], name="choose", then_branch=branch, else_branch=branch)
    )
    result = canonical_form(model)
    assert result is not model
    assert result.SerializeToString() == model.SerializeToString()


def twins_graph(first: str, second: str) -> onnx.ModelProto:
    """`x` → two Abs nodes (twins, in the given order) → Neg of one, Exp of the other → `y`."""
    abs_nodes = {
        "p": helper.make_node("Abs", ["x"], ["p"], name="abs_p"),
        "q": helper.make_node("Abs", ["x"], ["q"], name="abs_q"),
    }
    graph = helper.make_graph(
        [
            abs_nodes[first],
            abs_nodes[second],
            helper.make_node("Neg", ["p"], ["negated"]),
            helper.make_node("Exp", ["q"], ["grown"]),
            helper.make_node("Add", ["negated", "grown"], ["y"]),
        ],
        "twins",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        value_info=[helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]) for name in "pq"],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_twin_nodes_are_merged_so_their_order_does_not_matter():
    one, other = canonical_form(twins_graph("p", "q")), canonical_form(twins_graph("q", "p"))
    assert one.SerializeToString() == other.SerializeToString()
    assert [node.op_type for node in one.graph.node].count("Abs") == 1
    onnx.checker.check_model(one, full_check=True)
    x = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
    scores = onnx_session(one.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(scores, -np.abs(x) + np.exp(np.abs(x)), rtol=1e-6)


def test_kept_names_are_never_given_to_internal_values_and_their_infos_stay():
    model = small_graph(2.0)
    model.graph.output[0].name = "Mul_0"  # what the Mul node's own output would be called
    model.graph.node[1].output[0] = "Mul_0"
    model.graph.value_info.append(helper.make_tensor_value_info("Mul_0", TensorProto.FLOAT, ["n"]))
    canonical = canonical_form(model)
    onnx.checker.check_model(canonical, full_check=True)
    assert [list(node.output) for node in canonical.graph.node] == [["Mul_0_"], ["Mul_0"]]
    assert [value.name for value in canonical.graph.value_info] == ["Mul_0"]
