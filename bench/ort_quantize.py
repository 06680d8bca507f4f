#!/usr/bin/python3
"""Reduced-precision copies of the image tower's ONNX file, for ONNX Runtime's rows.

int8 (default): a dynamically quantised model, as onnxruntime.quantization.quantize_dynamic
builds it (that tool is Python onnxruntime, which Debian does not package). Every MatMul
whose B input is a constant float32 initializer [K,N] becomes

    A --DynamicQuantizeLinear--> A_u8, A_scale, A_zero     (u8, per tensor, at run time)
    MatMulInteger(A_u8, B_s8, A_zero, B_zero) -> int32 --Cast--> float
    Mul(that, Mul(A_scale, B_scale)) -> the MatMul's output (the bias Add stays after it)

with B quantised once here: s8, symmetric (zero point 0), one scale per output column
(--per-tensor: one scale for the matrix, quantize_dynamic's default). One DynamicQuantizeLinear
serves every MatMul that reads the same activation (q/k/v), as quantize_dynamic does.
ORT's level-2 optimiser fuses this shape into MatMulIntegerToFloat (with the bias) at load;
so that the bias joins the fusion, Add(bias, y) after a converted MatMul is written Add(y, bias)
(the torch export puts the bias first, ORT's fusion looks for it second).
The MatMuls between activations (attention scores, weights x V) and the patch Conv stay float32
(quantize_dynamic quantises only MatMuls with a constant B by default: MatMulConstBOnly).

bf16 (--bf16): each such MatMul runs in bfloat16: Cast(A -> bf16) x B(bf16 initializer) ->
Cast(-> float). This is an attempt only: ORT's CPU execution provider has no bfloat16 MatMul
kernel in the versions we have seen, so the session refuses to load it, and the benchmark
prints that reason instead of a time.

Needs Debian's python3-onnx (apt-get install python3-onnx): a bench-only dependency, never
needed to build or test clipmod. Without it this exits 3 with a one-line reason on stderr.

Usage: ort_quantize.py IN.onnx OUT.onnx [--per-tensor] [--bf16]
Prints one JSON line: what was converted.
"""
import argparse
import json
import os
import sys


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--per-tensor", action="store_true",
                    help="one weight scale per matrix (default: one per output column)")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 MatMuls instead of int8 (see above: ORT's CPU EP refuses)")
    return ap.parse_args()


ARGS = parse_args()
try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print(f"ort_quantize: needs python3-onnx (apt-get install python3-onnx), a bench-only "
          f"dependency ({e})", file=sys.stderr)
    sys.exit(3)


def quantize_weight(w, per_tensor):
    """float32 [K,N] -> (int8 [K,N], float32 scale [N] or [], int8 zero point alike)."""
    amax = np.abs(w).max() if per_tensor else np.abs(w).max(axis=0)
    scale = np.maximum(amax, 1e-30).astype(np.float32) / np.float32(127)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32), np.zeros(scale.shape, np.int8)


def to_bf16(w):
    """float32 -> bfloat16 TensorProto raw bytes (round to nearest even)."""
    u = w.astype(np.float32).view(np.uint32)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return u.tobytes()


class Rewriter:
    """Builds the new node list; owns the names it invents (prefix q8_ / bf_)."""

    def __init__(self, graph, per_tensor, bf16):
        self.g, self.per_tensor, self.bf16 = graph, per_tensor, bf16
        self.inits = {i.name: i for i in graph.initializer}
        self.uses = {}
        for n in graph.node:
            for x in n.input:
                self.uses[x] = self.uses.get(x, 0) + 1
        self.dql = {}  # activation name -> (u8, scale, zero) outputs, shared like quantize_dynamic
        self.new_inits, self.dead_inits = [], set()
        self.converted = 0

    def constant_b(self, node):
        if node.op_type != "MatMul" or len(node.input) != 2:
            return None
        b = self.inits.get(node.input[1])
        if b is None or b.data_type != TensorProto.FLOAT:
            return None
        return b if len(b.dims) == 2 else None

    def int8(self, node, b, out):
        w = numpy_helper.to_array(b)
        q, scale, zero = quantize_weight(w, self.per_tensor)
        base = "q8_" + b.name
        self.new_inits += [numpy_helper.from_array(q, base + "_q"),
                           numpy_helper.from_array(scale, base + "_scale"),
                           numpy_helper.from_array(zero, base + "_zero")]
        a = node.input[0]
        if a not in self.dql:
            t = "q8_" + a
            self.dql[a] = (t + "_u8", t + "_scale", t + "_zero")
            out.append(helper.make_node("DynamicQuantizeLinear", [a], list(self.dql[a]),
                                        name=t + "_DynamicQuantizeLinear"))
        a_u8, a_scale, a_zero = self.dql[a]
        y, nm = node.output[0], node.name or base
        out += [
            helper.make_node("MatMulInteger", [a_u8, base + "_q", a_zero, base + "_zero"],
                             [y + "_q8_i32"], name=nm + "_quant"),
            helper.make_node("Cast", [y + "_q8_i32"], [y + "_q8_f32"], name=nm + "_cast",
                             to=TensorProto.FLOAT),
            # A separate scale product per MatMul: ORT's fusion wants it used once.
            helper.make_node("Mul", [a_scale, base + "_scale"], [y + "_q8_scales"],
                             name=nm + "_scales_mul"),
            helper.make_node("Mul", [y + "_q8_f32", y + "_q8_scales"], [y],
                             name=nm + "_output_scale_mul"),
        ]

    def bfloat16(self, node, b, out):
        w = numpy_helper.to_array(b)
        name = "bf_" + b.name
        t = helper.make_tensor(name, TensorProto.BFLOAT16, list(w.shape), to_bf16(w), raw=True)
        self.new_inits.append(t)
        y, nm = node.output[0], node.name or name
        out += [
            helper.make_node("Cast", [node.input[0]], [y + "_bf_a"], name=nm + "_cast_a",
                             to=TensorProto.BFLOAT16),
            helper.make_node("MatMul", [y + "_bf_a", name], [y + "_bf_y"], name=nm + "_bf16"),
            helper.make_node("Cast", [y + "_bf_y"], [y], name=nm + "_cast_y",
                             to=TensorProto.FLOAT),
        ]

    def bias_second(self, node, converted):
        """Add(bias, y) -> Add(y, bias) after a converted MatMul: the same sum, in the operand
        order ORT's MatMulIntegerToFloat fusion looks for (the export puts the bias first)."""
        if node.op_type == "Add" and node.input[1] in converted and node.input[0] in self.inits:
            node.input[0], node.input[1] = node.input[1], node.input[0]

    def run(self):
        out, converted = [], set()
        for node in self.g.node:
            if not self.bf16:
                self.bias_second(node, converted)
            b = self.constant_b(node)
            if b is None:
                out.append(node)
                continue
            (self.bfloat16 if self.bf16 else self.int8)(node, b, out)
            self.converted += 1
            converted.add(node.output[0])
            self.uses[b.name] -= 1
            if self.uses[b.name] == 0:
                self.dead_inits.add(b.name)
        del self.g.node[:]
        self.g.node.extend(out)
        keep = [i for i in self.g.initializer if i.name not in self.dead_inits]
        del self.g.initializer[:]
        self.g.initializer.extend(keep + self.new_inits)


def main():
    a = ARGS
    model = onnx.load(a.input)
    rw = Rewriter(model.graph, a.per_tensor, a.bf16)
    rw.run()
    if not rw.converted:
        print(f"ort_quantize: {a.input}: no MatMul with a constant float32 B", file=sys.stderr)
        return 1
    # DynamicQuantizeLinear and MatMulInteger are opset 11/10; the export is opset 14.
    onnx.checker.check_model(model)
    tmp = a.output + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, a.output)
    print(json.dumps({"converted_matmuls": rw.converted,
                      "mode": "bf16" if a.bf16 else
                      "int8 u8 activations x s8 weights, " +
                      ("per-tensor" if a.per_tensor else "per-column") + " weight scales",
                      "shared_activation_quant": len(rw.dql),
                      "output": a.output, "bytes": os.path.getsize(a.output)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
