"""A default signature for signature-less .tflite files (common among published models).

ai-edge-quantizer calibrates through a model's signature; a float .tflite without one gets
``serving_default`` made from its subgraph's input and output tensors (names kept), and the
manifest says so.
"""

from __future__ import annotations

DEFAULT_SIGNATURE = "serving_default"


def has_signature(model: bytes) -> bool:
    """Whether the .tflite declares at least one signature."""
    from ai_edge_litert import schema_py_generated as s

    return s.Model.GetRootAsModel(model, 0).SignatureDefsLength() > 0


def with_default_signature(model: bytes) -> tuple[bytes, str | None]:
    """(the model with a default signature, a note saying what was added) — the model unchanged
    and None when it already has a signature."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    if has_signature(model):
        return model, None
    m = s.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = m.subgraphs[0]

    def tensor_map(index: int) -> object:
        t = s.TensorMapT()
        t.name = graph.tensors[index].name
        t.tensorIndex = index
        return t

    sig = s.SignatureDefT()
    sig.signatureKey = DEFAULT_SIGNATURE.encode()
    sig.subgraphIndex = 0
    sig.inputs = [tensor_map(i) for i in graph.inputs]
    sig.outputs = [tensor_map(i) for i in graph.outputs]
    m.signatureDefs = [sig]
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")

    def names(indices: list[int]) -> str:
        return ", ".join(_text(graph.tensors[i].name) for i in indices)

    note = (f"the source .tflite has no signature: added {DEFAULT_SIGNATURE!r} from its "
            f"tensors (inputs {names(graph.inputs)}; outputs {names(graph.outputs)})")
    return bytes(builder.Output()), note


def _text(name: bytes | str | None) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def normalize_op_codes(model: bytes) -> tuple[bytes, str | None]:
    """(the model with every operator code's ``builtin_code`` set, a note) — the model unchanged
    and None when they all are.

    Files written before TFLite schema 3a name each op in ``deprecated_builtin_code`` only,
    leaving ``builtin_code`` 0 (ADD). LiteRT reads the larger of the two; ai-edge-quantizer reads
    ``builtin_code`` alone, so it saw every op of such a file as ADD and quantized nothing: the
    "dynamic-int8" and "fp16" variants of BlazeFace came out as the float model, byte for byte.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(model), 0)
    fixed = 0
    for c in m.operatorCodes or []:
        code = max(c.builtinCode, c.deprecatedBuiltinCode)
        if c.builtinCode != code:
            c.builtinCode = code
            fixed += 1
    if not fixed:
        return model, None
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), (f"the source names {fixed} of its op kinds the pre-3a way "
                                     "(deprecated_builtin_code only): builtin_code set so the "
                                     "quantizer sees the real ops")


def fold_fp16_weights(model: bytes) -> tuple[bytes, str | None]:
    """(the model with float16 constant weights expanded to float32, a note) — the model
    unchanged and None when it has none.

    Published float models often store weights as float16 behind DEQUANTIZE ops; int8
    quantizers then see those weights as activations (asymmetric zero points that LiteRT's
    int8 CONV_2D refuses). Folding the DEQUANTIZE ops gives a plain float32 model.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(bytearray(model), 0)
    dequantize = {i for i, c in enumerate(m.operatorCodes or [])
                  if max(c.builtinCode, c.deprecatedBuiltinCode) == s.BuiltinOperator.DEQUANTIZE}
    folded = 0
    for graph in m.subgraphs or []:
        kept = []
        for op in graph.operators or []:
            if op.opcodeIndex in dequantize and len(op.inputs) == 1:
                src = graph.tensors[op.inputs[0]]
                data = m.buffers[src.buffer].data if src.buffer < len(m.buffers) else None
                if src.type == s.TensorType.FLOAT16 and data is not None and len(data):
                    values = np.frombuffer(bytes(np.asarray(data, np.uint8)), np.float16)
                    buf = s.BufferT()
                    buf.data = np.frombuffer(values.astype(np.float32).tobytes(), np.uint8)
                    m.buffers.append(buf)
                    graph.tensors[op.outputs[0]].buffer = len(m.buffers) - 1
                    folded += 1
                    continue
            kept.append(op)
        graph.operators = kept
    if not folded:
        return model, None
    builder = flatbuffers.Builder(len(model) * 2 + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), (f"the source stores weights as float16: {folded} "
                                     "DEQUANTIZE ops folded into float32 constants")
