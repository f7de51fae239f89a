"""Where the time of an exported model goes, per face at 1 thread, batch 1 (LiteRT + XNNPACK).

    python benchmarks/profile_exports.py --json OUT FILE.tflite [FILE.tflite ...] [--cascade C.tflite]
        [--rounds 30] [--onnx FILE.onnx ...]

For each plain ``.tflite`` file (:func:`acrloss.export.export_model`):

- ``ops``: operator counts of its graph (dynamic-shape plumbing such as ``SHAPE``,
  ``PACK``, ``REDUCE_PROD`` shows up here);
- ``invoke_ms``: ``Interpreter.invoke()`` alone; ``call_ms``: ``set_tensor`` + ``invoke`` +
  ``get_tensor`` (the Python call overhead is the difference); ``no_xnnpack_ms``: the same
  graph on LiteRT's reference kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), i.e. how much
  XNNPACK takes over.

All interpreters are timed interleaved (``--rounds`` rounds of 5 calls each), median per
call: on a shared machine only ratios within one run mean much.

``--cascade``: a per-stage export (:func:`acrloss.export_cascade.export_cascade_tflite`)
against the first file (the same model in one graph): each signature's ``invoke`` and its
SignatureRunner call, the 5 calls chained, and :meth:`ExportedCascade.run` at
``threshold=-inf`` (every stage) on one random face.

``--onnx``: ``run_ms``, a plain ONNX Runtime session's ``run`` (1 thread, no spinning),
timed interleaved with the rest; then ONNX Runtime's own profiler (``enable_profiling``, 60
calls): the median kernel time per node, summed per operator type, as shares of the total
(profiled nodes carry the profiler's own overhead: compare ``run_ms``, not ``kernel_ms``,
between files).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import numpy as np


def _interleaved(fns: dict, rounds: int) -> dict[str, float]:
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(5):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: round(float(np.median(v)) * 1e3, 4) for k, v in times.items()}


def _plain(path: str, Interpreter, OpResolverType):  # noqa: N803
    rng = np.random.default_rng(0)
    made = {}
    for key, kwargs in (("xnnpack", {}),
                        ("ref", {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES})):
        it = Interpreter(model_path=path, num_threads=1, **kwargs)
        d = it.get_input_details()[0]
        shape = [1, *(int(v) for v in d["shape_signature"][1:])]
        it.resize_tensor_input(d["index"], shape, strict=False)
        it.allocate_tensors()
        x = (rng.random(shape) * 255).astype(np.float32)
        it.set_tensor(d["index"], x)
        made[key] = (it, d["index"], it.get_output_details()[0]["index"], x)
    it, i_in, i_out, x = made["xnnpack"]
    ops = collections.Counter(op["op_name"] for op in it._get_ops_details())

    def call():
        it.set_tensor(i_in, x)
        it.invoke()
        return it.get_tensor(i_out)

    return ops, {"invoke_ms": it.invoke, "call_ms": call, "no_xnnpack_ms": made["ref"][0].invoke}


def _onnx_session(path: str, profile: bool = False):
    import onnxruntime as ort  # noqa: PLC0415

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads, o.enable_profiling = 1, 1, profile
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.log_severity_level = 3
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = (np.random.default_rng(0).random([1, *inp.shape[1:]]) * 255).astype(np.float32)
    return s, {inp.name: x}


def _onnx(path: str) -> dict:
    s, feed = _onnx_session(path, profile=True)
    calls = 60
    for _ in range(calls):
        s.run(None, feed)
    prof = s.end_profiling()
    events = json.loads(Path(prof).read_text())
    os.remove(prof)
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    op_of = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"])
            op_of[e["name"]] = e["args"]["op_name"]
    node_us = {k: float(np.median(v)) * len(v) / calls for k, v in per_node.items()}
    total = sum(node_us.values())
    by_op: dict[str, float] = collections.defaultdict(float)
    for k, v in node_us.items():
        by_op[op_of[k]] += v
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
    nodes = sorted(node_us.items(), key=lambda kv: -kv[1])[:8]
    return {"kernel_ms": round(total / 1e3, 4), "share_by_op": {k: round(v / total, 3) for k, v in top},
            "top_nodes": {k.removesuffix("_kernel_time"): round(v / total, 3) for k, v in nodes}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("files", nargs="+", help=".tflite files (one graph each)")
    p.add_argument("--cascade", help="a per-stage cascade .tflite of the first file's model")
    p.add_argument("--onnx", nargs="*", default=[], help=".onnx files for ONNX Runtime's profiler")
    p.add_argument("--rounds", type=int, default=30)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415

    fns, result = {}, {"files": {}, "load_before": list(os.getloadavg()), "rounds": a.rounds}
    for f in a.files:
        ops, timed = _plain(f, Interpreter, OpResolverType)
        result["files"][f] = {"ops": dict(ops), "num_ops": sum(ops.values())}
        fns.update({(f, k): v for k, v in timed.items()})
    for f in a.onnx:
        session, feed = _onnx_session(f)
        fns[("onnx", f)] = lambda s=session, feed=feed: s.run(None, feed)
    if a.cascade:
        from acrloss.export_cascade import ExportedCascade  # noqa: PLC0415

        cas = ExportedCascade(a.cascade, num_threads=1)
        x = (np.random.default_rng(1).random((1, cas.input_size, cas.input_size, 3)) * 255).astype(np.float32)
        levels = cas._run_start(x)
        shape, hidden = cas.mean_shape[None].copy(), np.zeros((1, cas.hidden_units), np.float32)
        wrapper = cas._interp._interpreter

        def chained():
            lv, s, h = cas._run_start(x), shape, hidden
            for t, fn in enumerate(cas._stage_fns):
                s, h, _ = fn([lv[cas.levels[t]], s, h])

        fns[("cascade", "start_runner_ms")] = lambda: cas._start(image=x)
        fns[("cascade", "start_invoke_ms")] = lambda: wrapper.Invoke(cas._start.runner._subgraph_index)
        for t, runner in enumerate(cas._stage_runners):
            lv = levels[cas.levels[t]]
            fns[("cascade", f"stage_{t + 1}_runner_ms")] = lambda r=runner, lv=lv: r(image=lv, shape=shape, hidden=hidden)
            fns[("cascade", f"stage_{t + 1}_invoke_ms")] = lambda r=runner: wrapper.Invoke(r.runner._subgraph_index)
        if cas._head is not None:  # start + every stage but the last in one call (exits="last")
            fns[("cascade", "head_runner_ms")] = lambda: cas._head(image=x)
        fns[("cascade", "all_calls_chained_ms")] = chained
        fns[("cascade", "run_all_stages_ms")] = lambda: cas.run(x, float("-inf"))
    timed = _interleaved(fns, a.rounds)
    if a.cascade:
        result["cascade"] = {"file": a.cascade}
    result["onnx"] = {f: {"run_ms": timed.pop(("onnx", f)), **_onnx(f)} for f in a.onnx}
    for (f, k), v in timed.items():
        (result["cascade"] if f == "cascade" else result["files"][f])[k] = v
    result["load_after"] = list(os.getloadavg())
    result["command"] = "python benchmarks/profile_exports.py " + " ".join(argv or [])
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
