"""A canonical form of an ONNX graph, so that one trained model always exports to the same bytes.

tf2onnx names nodes and folded constants with process-wide counters, and of equal constants it
keeps whichever its set order meets first, so two conversions of one Keras model list the same
computation in different orders under different names. The model version is a hash of
`model.onnx`, so the export writes each graph in a canonical form: nodes in a topological order
fixed by what each computes, and every internal name derived from that order. The graph's
inputs and outputs keep their names.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from typing import Any

import onnx
import onnx.numpy_helper

logger = logging.getLogger(__name__)

# Ops whose equal-looking twins may compute different values: never merged.
RANDOM_OPS = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
    }
)


def canonical_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose main graph lists its nodes, initializers and value infos in
    canonical order under canonical names. `model`'s nodes must be topologically sorted, as
    onnx.checker requires. A node that computes what another computes is merged into it
    (`_merge_twins`). A graph with subgraphs (If, Loop, Scan) is copied unchanged, with a
    warning: its bytes stay the converter's."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    if any(_has_subgraph(node) for node in graph.node):
        logger.warning("the ONNX graph has subgraphs, so its nodes keep the converter's order")
        return result
    node_keys, value_keys = _keys(graph)
    node_keys = _merge_twins(graph, node_keys)
    order = _canonical_order(graph, node_keys)
    node_names, renamed = _canonical_names(graph, order, value_keys)
    rank = {name: position for position, name in enumerate(renamed)}
    nodes = [graph.node[index] for index in order]
    initializers = sorted(graph.initializer, key=lambda tensor: rank.get(tensor.name, -1))
    # The internal values' infos in canonical order, then those of the graph's inputs and
    # outputs by name; infos of values the graph no longer holds are dropped.
    kept = {value.name for value in [*graph.input, *graph.output]}
    value_infos = sorted(
        (value for value in graph.value_info if value.name in rank or value.name in kept),
        key=lambda value: (value.name not in rank, rank.get(value.name, 0), value.name),
    )
    _refill(graph.node, nodes)
    _refill(graph.initializer, initializers)
    _refill(graph.value_info, value_infos)
    for node, name in zip(graph.node, node_names, strict=True):
        node.name = name
        node.input[:] = [renamed.get(value, value) for value in node.input]
        node.output[:] = [renamed.get(value, value) for value in node.output]
    for item in [*graph.initializer, *graph.value_info]:
        item.name = renamed.get(item.name, item.name)
    _rename_symbolic_dims(graph)
    return result


def _rename_symbolic_dims(graph: onnx.GraphProto) -> None:
    """Number the value infos' symbolic dimensions (tf2onnx's counter-named `unk__N`) in order
    of first appearance; those of the graph's inputs and outputs keep their names."""
    kept = {
        dim.dim_param
        for value in [*graph.input, *graph.output]
        for dim in value.type.tensor_type.shape.dim
    }
    renamed: dict[str, str] = {}
    for value in graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param not in kept:
                name = renamed.setdefault(dim.dim_param, f"dim_{len(renamed)}")
                dim.dim_param = name


def _refill(field: Any, items: list[Any]) -> None:
    """Make the repeated message field `field` hold copies of `items` (which may be its own)."""
    copies = [type(item)() for item in items]
    for copy, item in zip(copies, items, strict=True):
        copy.CopyFrom(item)
    del field[:]
    field.extend(copies)


def _merge_twins(graph: onnx.GraphProto, node_keys: list[str]) -> list[str]:
    """Drop each node whose key equals an earlier node's, its consumers reading the earlier
    node's outputs instead: which twin a consumer read would otherwise follow the converter's
    order. Random ops, nodes whose outputs are graph outputs, and nodes with an output that
    their twin leaves out are kept. Returns the remaining nodes' keys, which the merge leaves
    as they were: a twin's outputs have the same keys as the outputs they stand for."""
    graph_outputs = {value.name for value in graph.output}
    first: dict[str, onnx.NodeProto] = {}
    alias: dict[str, str] = {}
    survivors, survivor_keys = [], []
    for node, key in zip(graph.node, node_keys, strict=True):
        twin = first.setdefault(key, node)
        if (
            twin is not node
            and node.op_type not in RANDOM_OPS
            and not graph_outputs.intersection(node.output)
            and len(twin.output) >= len(node.output)
            and all(twin.output[i] for i, output in enumerate(node.output) if output)
        ):
            alias.update({output: twin.output[i] for i, output in enumerate(node.output) if output})
            continue
        survivors.append(node)
        survivor_keys.append(key)
    if alias:
        _refill(graph.node, survivors)
        for node in graph.node:
            node.input[:] = [alias.get(name, name) for name in node.input]
    return survivor_keys


def _has_subgraph(node: onnx.NodeProto) -> bool:
    graph_types = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(attribute.type in graph_types for attribute in node.attribute)


def _digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little") + data)
    return hasher.hexdigest()


def _keys(graph: onnx.GraphProto) -> tuple[list[str], dict[str, str]]:
    """A key per node and per value that depends only on what computes it, not on any name but
    the graph inputs': a hash over op types, attributes and inputs' keys, down to the constants."""
    value_keys = {value.name: _digest("input", value.name) for value in graph.input}
    for tensor in graph.initializer:
        value_keys[tensor.name] = _digest(
            "constant",
            str(tensor.data_type),
            str(list(tensor.dims)),
            onnx.numpy_helper.to_array(tensor).tobytes(),
        )
    value_keys[""] = ""  # an omitted optional input
    node_keys = []
    for node in graph.node:
        attributes = sorted(node.attribute, key=lambda attribute: attribute.name)
        key = _digest(
            node.domain,
            node.op_type,
            *(attribute.SerializeToString(deterministic=True) for attribute in attributes),
            "inputs",
            *(value_keys[name] for name in node.input),
        )
        node_keys.append(key)
        for position, output in enumerate(node.output):
            if output:
                value_keys[output] = _digest(key, str(position))
    return node_keys, value_keys


def _canonical_order(graph: onnx.GraphProto, keys: list[str]) -> list[int]:
    """Node indices in topological order, taking among the ready nodes the smallest key (Kahn)."""
    producer = {
        output: index for index, node in enumerate(graph.node) for output in node.output if output
    }
    producers = [{producer[name] for name in node.input if name in producer} for node in graph.node]
    consumers: list[list[int]] = [[] for _ in graph.node]
    for index, sources in enumerate(producers):
        for source in sources:
            consumers[source].append(index)
    waiting = [len(sources) for sources in producers]
    ready = [(keys[index], index) for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers[index]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, (keys[consumer], consumer))
    return order


def _canonical_names(
    graph: onnx.GraphProto, order: list[int], value_keys: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Node names, and new names for the other values, in canonical order: the i-th node in
    `order` is `{op_type}_{i}`, as are its outputs (`:k` after the first); initializers are
    `constant_{j}`, numbered by first use, unused ones last in the order of their keys."""
    kept = {value.name for value in [*graph.input, *graph.output]}
    initializers = [tensor.name for tensor in graph.initializer if tensor.name not in kept]

    def free(name: str) -> str:  # never one of the names the graph's inputs and outputs keep
        while name in kept:
            name += "_"
        return name

    node_names = []
    renamed: dict[str, str] = {}
    constants = iter(range(len(initializers)))
    for position, index in enumerate(order):
        node = graph.node[index]
        node_names.append(free(f"{node.op_type}_{position}"))
        for name in node.input:
            if name in initializers and name not in renamed:
                renamed[name] = free(f"constant_{next(constants)}")
        for output_position, output in enumerate(node.output):
            if output and output not in kept:
                suffix = f":{output_position}" if output_position else ""
                renamed[output] = free(f"{node.op_type}_{position}{suffix}")
    for name in sorted(set(initializers) - set(renamed), key=value_keys.__getitem__):
        renamed[name] = free(f"constant_{next(constants)}")
    return node_names, renamed
