"""Map the kernels a per-op profile reports to TFLite op types.

* Builtin kernels report their node index: the op type is that node's op name.
* XNNPACK kernels report only a kernel name (e.g. "Convolution (NHWC, F32) IGEMM").
  XNNPACK runs the nodes it took in model order, so kernels are matched to the
  delegated nodes by order within the partition, checked against the kernel
  name (:data:`KERNEL_HINTS`). A kernel XNNPACK adds by itself (e.g. the
  "Static Reshape" in front of a FULLY_CONNECTED) that matches no node keeps
  ``op_type`` None.
"""

from __future__ import annotations

from typing import Any

from .profiler import EVENT_OPERATOR, ProfiledOp

KERNEL_HINTS: dict[str, tuple[str, ...]] = {
    "Convolution": ("CONV_2D", "DEPTHWISE_CONV_2D"),
    "Deconvolution": ("TRANSPOSE_CONV",),
    "Fully Connected": ("FULLY_CONNECTED", "BATCH_MATMUL"),
    "Batch Matrix Multiply": ("BATCH_MATMUL",),
    "Max Pooling": ("MAX_POOL_2D",),
    "Average Pooling": ("AVERAGE_POOL_2D",),
    "Mean": ("MEAN",),
    "Sum": ("SUM",),
    "Add": ("ADD",),
    "Subtract": ("SUB",),
    "Multiply": ("MUL",),
    "Divide": ("DIV",),
    "Softmax": ("SOFTMAX",),
    "Sigmoid": ("LOGISTIC",),
    "Tanh": ("TANH",),
    "Clamp": ("RELU", "RELU6", "RELU_N1_TO_1"),
    "HardSwish": ("HARD_SWISH",),
    "Leaky ReLU": ("LEAKY_RELU",),
    "Constant Pad": ("PAD", "PADV2"),
    "Concatenate": ("CONCATENATION",),
    "Transpose": ("TRANSPOSE",),
    "Copy": ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"),
    "Reshape": ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"),
    "Resize Bilinear": ("RESIZE_BILINEAR",),
    "Convert": ("QUANTIZE", "DEQUANTIZE"),
    "Slice": ("SLICE", "STRIDED_SLICE"),
    "Split": ("SPLIT", "SPLIT_V"),
}


def _hinted(kernel: str) -> tuple[str, ...]:
    for prefix, types in KERNEL_HINTS.items():
        if kernel.startswith(prefix):
            return types
    return ()


def label_ops(ops: tuple[ProfiledOp, ...], nodes: list[str]) -> list[dict[str, Any]]:
    """OpRecord-shaped dicts for profiled ops; ``nodes`` = op name per node index of the
    model's main subgraph.

    Ops of a subgraph that control flow ran (WHILE, IF, CALL_ONCE) keep their own names
    (a builtin kernel's event is named after its op) and carry ``detail.subgraph``: their
    node indices count within that subgraph, so they are not model node indices.
    A delegate kernel that reported 0 µs in every run carries ``detail.untimed``.
    """
    builtin_nodes = {op.node_index for op in ops
                     if op.event_type == EVENT_OPERATOR and op.subgraph == 0}
    delegated = [
        (i, name) for i, name in enumerate(nodes) if name != "DELEGATE" and i not in builtin_nodes
    ]
    pos = 0
    rows: list[dict[str, Any]] = []
    for op in ops:
        op_type: str | None = None
        node: int | None = op.node_index
        delegate: str | None = None
        detail: dict[str, Any] = {}
        if op.subgraph:
            detail = {"subgraph": op.subgraph, "subgraph_node": node}
            node = None
            if op.event_type == EVENT_OPERATOR:
                op_type = op.kernel
            else:
                delegate = "XNNPACK"
        elif op.event_type == EVENT_OPERATOR:
            if node is not None and 0 <= node < len(nodes):
                op_type = nodes[node]
        else:
            delegate = "XNNPACK"
            hints = _hinted(op.kernel)
            # look ahead a little: XNNPACK may fuse or drop nodes (e.g. a RESHAPE)
            for k in range(pos, min(pos + 3, len(delegated))):
                if delegated[k][1] in hints:
                    node, op_type = delegated[k]
                    pos = k + 1
                    break
        if op.untimed:
            detail["untimed"] = True
        row: dict[str, Any] = {
            "index": op.index,
            "kernel": op.kernel,
            "op_type": op_type,
            "delegate": delegate,
            "node_index": node,
            "avg_ms": op.avg_ms,
        }
        if detail:
            row["detail"] = detail
        rows.append(row)
    return rows
