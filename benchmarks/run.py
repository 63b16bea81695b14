"""Benchmark of the torch SynthSR pipeline against the floor measured in the same run.

Each configuration runs in a fresh subprocess (``ru_maxrss`` is then that configuration's peak RSS), which first
measures the machine's fp32 matrix rate with the same thread count (best of several 2048^2 matmuls), then runs
the pipeline end to end (model from the converted cache, read, pre-process, network, post-process, write).

    floor    = FLOPs of the published network on the padded shape / matmul rate (the better of the rates
               measured just before and just after the run)
    ratio    = wall time / floor          (the goal is <= 1.3 on the CPU)
    GFLOP/s  = published FLOPs / wall time (can exceed the matmul rate: the implementation skips work)

Fidelity next to each row: uint8 voxels identical to the TensorFlow reference output (and to this
implementation's whole-volume output for the tiled rows), and the largest difference in levels.

    python benchmarks/run.py                      # the default table (whole FLAIR, 1 and 2 threads, tiles)
    python benchmarks/run.py --quick              # small inputs only (tiny model): overheads
    python benchmarks/run.py --configs flair_t2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVSET = REPO.parent / "shared" / "fixtures" / "tf-reference" / "devset"


def devset_cases() -> dict[str, dict]:
    """The fixtures' manifest: case name -> case."""
    return {c["name"]: c for c in json.loads((DEVSET / "manifest.json").read_text())}


def run_options(case: dict) -> dict[str, bool]:
    """``run()`` keywords equivalent to a case's ``mri_synthsr`` flags."""
    flags = case["flags"]
    return {"ct": "--ct" in flags, "flip": "--disable_flipping" not in flags,
            "sharpen": "--disable_sharpening" not in flags}


REFERENCE_COST = {"wall_s_2threads": 136.6, "wall_s_1thread": 178.8, "peak_rss_gb": 5.92, "issue_peak_rss_gb": 7.1}

# name: (manifest case, threads, extra run() keywords, compare-with-config)
CONFIGS: dict[str, dict] = {
    "flair_t1": {"case": "flair_whole_full", "threads": 1},
    "flair_t2": {"case": "flair_whole_full", "threads": 2},
    "flair_t2_noslab": {"case": "flair_whole_full", "threads": 2, "run": {"slab_rows": None}},
    "flair_t2_bound1.6": {"case": "flair_whole_full", "threads": 2, "run": {"max_memory_gb": 1.6},
                          "compare": "flair_t2"},
    "flair_t2_bound1.3": {"case": "flair_whole_full", "threads": 2, "run": {"max_memory_gb": 1.3},
                          "compare": "flair_t2"},
    "crop_full_t2": {"case": "general_full", "threads": 2},
    "crop_tiny_t1": {"case": "general", "threads": 1},
    "crop_tiny_t2": {"case": "general", "threads": 2},
    "oblique_tiny_t2": {"case": "oblique", "threads": 2},
    # GPU rows (only with CUDA; never run in CI): both passes as one batch, the three precisions, and the
    # out-of-memory fallback forced by capping the process's share of device memory
    "flair_cuda_fp32": {"case": "flair_whole_full", "threads": 2, "device": "cuda", "run": {"precision": "fp32"}},
    "flair_cuda_tf32": {"case": "flair_whole_full", "threads": 2, "device": "cuda", "run": {"precision": "tf32"},
                        "compare": "flair_cuda_fp32"},
    "flair_cuda_bf16": {"case": "flair_whole_full", "threads": 2, "device": "cuda", "run": {"precision": "bf16"},
                        "compare": "flair_cuda_fp32"},
    "flair_cuda_oom_tiles": {"case": "flair_whole_full", "threads": 2, "device": "cuda",
                             "cuda_memory_gb": 4.0, "compare": "flair_cuda_fp32"},
}
GPU = ["flair_cuda_fp32", "flair_cuda_tf32", "flair_cuda_bf16", "flair_cuda_oom_tiles"]
DEFAULT = ["crop_tiny_t1", "crop_tiny_t2", "crop_full_t2", "flair_t1", "flair_t2", "flair_t2_bound1.6",
           "flair_t2_bound1.3"]
QUICK = ["crop_tiny_t1", "crop_tiny_t2", "oblique_tiny_t2", "crop_full_t2"]


# ----------------------------------------------------------------------------- child
def matmul_rate(threads: int, size: int = 2048, repeats: int = 7) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def instrument_stages() -> dict:
    """Wrap the pipeline's stage functions (looked up by ``run`` at call time) to time them and to record the
    peak RSS reached by the end of each stage."""
    import resource

    from synthsr_nipype.inference import pipeline

    stages: dict[str, dict] = {}

    def wrap(name: str) -> None:
        real = getattr(pipeline, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                entry = stages.setdefault(name, {"s": 0.0, "calls": 0})
                entry["s"] += time.perf_counter() - start
                entry["calls"] += 1
                entry["peak_rss_gb_after"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

        setattr(pipeline, name, timed)

    for name in ("load_volume", "prepare_general", "prepare_hyperfine", "predict", "combine_passes",
                 "finish_general", "finish_hyperfine", "to_uint8", "output_image"):
        wrap(name)
    return stages


def cuda_matmul_rate(size: int = 8192, repeats: int = 10) -> float:
    """fp32 (IEEE, no TF32) matmul rate of the GPU: the floor for the fp32 rows."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(size, size, device="cuda"), torch.randn(size, size, device="cuda")
    a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    del a, b
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return 2.0 * size**3 / best / 1e9


def child(config: dict, out_path: str, output_image: str) -> None:
    import resource

    t_import = time.perf_counter()
    import numpy as np  # noqa: F401 - import cost is part of the process, not of the run
    import torch

    from synthsr_nipype.atomic import atomic_write_nifti
    from synthsr_nipype.inference import run
    from synthsr_nipype.inference.io import load_volume
    from synthsr_nipype.inference.memory import estimate_memory_gb, network_flops, plan_inference
    from synthsr_nipype.model import load_model
    from synthsr_nipype.model.spec import pad_multiple

    import_s = time.perf_counter() - t_import
    threads = int(config["threads"])
    torch.set_num_threads(threads)
    device = config.get("device", "cpu")
    rate = matmul_rate(threads) if device == "cpu" else cuda_matmul_rate()
    if config.get("cuda_memory_gb"):
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(config["cuda_memory_gb"] * 1024**3 / total)
    case = config["manifest"]
    image_path = DEVSET / case["inputs"]["image"]
    model_path = Path(config["model"]) if config.get("model") else DEVSET / case["model"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    stages = instrument_stages()
    warmup_s = None
    start = time.perf_counter()
    model = load_model(model_path, device=config.get("device", "cpu"))
    load_s = time.perf_counter() - start
    kwargs = dict(config.get("run", {}))
    options = run_options(case)
    if device != "cpu":  # first-call overheads (cuDNN handles, kernels) are measured apart from the run
        warm = time.perf_counter()
        run(image_path, model, flip=options["flip"], device=device, threads=threads, **kwargs)
        torch.cuda.synchronize()
        warmup_s = time.perf_counter() - warm
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
    image = run(image_path, model, **options, device=device, threads=threads, **kwargs)
    atomic_write_nifti(output_image, image)
    wall = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    gpu_peak = torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None
    # the machine is shared: the rate is measured again after the run and the floor uses the better of the
    # two (the machine's capability), so load that comes and goes during a run can only worsen the ratio
    rate_after = matmul_rate(threads) if device == "cpu" else rate

    padded = tuple(case["padded_shape"])
    passes = 2 if options["flip"] else 1
    spec = model.spec
    plan = plan_inference(padded, spec, "cpu", max_memory_gb=kwargs.get("max_memory_gb"),
                          slab_rows=kwargs.get("slab_rows", "auto"), tta=options["flip"])
    del load_volume, pad_multiple
    result = {
        "cpu_model": cpu_model(), "threads": threads, "matmul_gflops": max(rate, rate_after),
        "matmul_gflops_before": rate,
        "matmul_gflops_after": rate_after, "import_s": import_s, "model_load_s": load_s, "wall_s": wall,
        "gpu_warmup_run_s": warmup_s,
        "peak_rss_gb": peak_rss, "rss_after_import_gb": rss_before, "gpu_peak_gb": gpu_peak,
        "flops": network_flops(padded, spec, passes=passes),
        "flops_executed": network_flops(padded, spec, passes=passes, executed=True),
        "stages": stages,
        "padded_shape": padded, "plan": {"slab_rows": plan.slab_rows, "tile": plan.tile, "margin": plan.margin},
        "estimate_gb": plan.estimate_gb if kwargs.get("max_memory_gb") else
        estimate_memory_gb(padded, spec, "cpu", slab_rows=kwargs.get("slab_rows", "auto"), tta=options["flip"]),
    }
    Path(out_path).write_text(json.dumps(result))


def cpu_model() -> str:
    """The processor's model name (``lscpu``'s "Model name"), so that rows of different kinds never mix."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_slug(model: str) -> str:
    """``AMD EPYC 9R14 96-Core Processor`` -> ``amd-epyc``: the kind, for the results file name."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", model) if w.lower() not in {"r", "tm", "cpu"}]
    return "-".join(words[:2]) or "unknown-cpu"


# ----------------------------------------------------------------------------- parent
def uint8_agreement(mine: str, other: str) -> dict:
    import nibabel as nib
    import numpy as np

    a = np.asanyarray(nib.load(mine).dataobj).astype(np.int16)
    b = np.asanyarray(nib.load(other).dataobj).astype(np.int16)
    if a.shape != b.shape:
        return {"identical_pct": None, "max_diff": None, "note": f"shape {a.shape} vs {b.shape}"}
    return {"identical_pct": 100.0 * float(np.mean(a == b)), "max_diff": int(np.abs(a - b).max())}


def run_config(name: str, workdir: Path, env_extra: dict, model: str | None = None) -> dict:
    config = dict(CONFIGS[name])
    config["manifest"] = devset_cases()[config["case"]]
    config["model"] = model
    out_json = workdir / f"{name}.json"
    out_image = workdir / f"{name}.nii.gz"
    env = dict(os.environ, **env_extra)
    env.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the synthsr command sets it
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import json, sys; sys.path.insert(0, %r); from benchmarks.run import child; "
            "child(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])" % str(REPO))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(config), str(out_json), str(out_image)],
                          env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        return {"name": name, "error": proc.stderr[-2000:]}
    result = json.loads(out_json.read_text())
    result.update(name=name, case=config["case"], process_wall_s=process_s, run=config.get("run", {}))
    floor = result["flops"] / (result["matmul_gflops"] * 1e9)
    result["floor_s"] = floor
    result["ratio_to_floor"] = result["wall_s"] / floor
    result["achieved_gflops"] = result["flops"] / result["wall_s"] / 1e9
    result["executed_gflops"] = result["flops_executed"] / result["wall_s"] / 1e9
    reference = DEVSET / "expected" / config["case"] / "output.nii.gz"
    # another model than the fixture's has no TF reference to agree with
    result["vs_tf_reference"] = ({"identical_pct": None, "max_diff": None} if model else
                                 uint8_agreement(str(out_image), str(reference)))
    result["model"] = model or str(DEVSET / config["manifest"]["model"])
    if config.get("compare"):
        other = workdir / f"{config['compare']}.nii.gz"
        if other.exists():
            result["vs_" + config["compare"]] = uint8_agreement(str(out_image), str(other))
    return result


def warm_cache(names: list[str], env_extra: dict, model: str | None = None) -> None:
    """Convert each model once, so that every configuration loads from the converted cache."""
    manifest = devset_cases()
    models = [model] if model else sorted({str(DEVSET / manifest[CONFIGS[n]["case"]]["model"]) for n in names})
    code = ("import sys; sys.path.insert(0, %r); from synthsr_nipype.model import load_model; "
            "[load_model(p) for p in sys.argv[1:]]" % str(REPO))
    subprocess.run([sys.executable, "-c", code, *models], env=dict(os.environ, **env_extra), check=True)


def table(results: list[dict]) -> str:
    head = ("config", "cpu", "thr", "wall s", "floor s", "ratio", "peak RSS GB", "est GB", "GFLOP", "GFLOP/s",
            "exec GFLOP/s", "matmul GF/s (before/after)", "vs TF uint8 %", "max", "vs whole %", "max")
    rows = [head]
    for r in results:
        if "error" in r:
            rows.append((r["name"], "", "ERROR", r["error"].strip().splitlines()[-1][:80]) + ("",) * (len(head) - 4))
            continue
        whole = next((v for k, v in r.items() if k.startswith("vs_flair")), None)
        tf = r["vs_tf_reference"]
        rows.append((r["name"], cpu_slug(r["cpu_model"]), str(r["threads"]), f"{r['wall_s']:.2f}",
                     f"{r['floor_s']:.2f}",
                     f"{r['ratio_to_floor']:.2f}", f"{r['peak_rss_gb']:.2f}", f"{r['estimate_gb']:.2f}",
                     f"{r['flops'] / 1e9:.0f}", f"{r['achieved_gflops']:.1f}", f"{r['executed_gflops']:.1f}",
                     f"{r['matmul_gflops_before']:.0f}/{r['matmul_gflops_after']:.0f}",
                     "-" if tf["identical_pct"] is None else f"{tf['identical_pct']:.4f}",
                     "-" if tf["max_diff"] is None else str(tf["max_diff"]),
                     "-" if whole is None else f"{whole['identical_pct']:.4f}",
                     "-" if whole is None else str(whole["max_diff"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=None, choices=sorted(CONFIGS))
    parser.add_argument("--quick", action="store_true", help="small inputs only")
    parser.add_argument("--gpu", action="store_true", help="the CUDA rows (plus flair_t2 as the CPU baseline)")
    parser.add_argument("--json", default=None,
                        help="where to write JSON (default: benchmarks/results-<cpu kind>.json, e.g. results-amd-epyc)")
    parser.add_argument("--keep", default=None, help="folder for the outputs (default: a temporary folder)")
    parser.add_argument("--model", default=None,
                        help="run every row with this model instead of the fixture's (timings and memory; no TF "
                             "agreement): e.g. where the 53 MB fixture model does not travel")
    args = parser.parse_args(argv)
    names = args.configs or (QUICK if args.quick else GPU + ["flair_t2"] if args.gpu else DEFAULT)
    names = list(names)
    # tiled rows compare with their whole-volume row: run that first
    for name in list(names):
        other = CONFIGS[name].get("compare")
        if other and other not in names:
            names.insert(names.index(name), other)
        elif other and names.index(other) > names.index(name):
            names.remove(other)
            names.insert(names.index(name), other)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="synthsr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="synthsr-bench-cache-")
    env = {"SYNTHSR_CACHE_DIR": os.environ.get("SYNTHSR_CACHE_DIR", cache)}
    warm_cache(names, env, args.model)
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(run_config(name, workdir, env, args.model))
    text = table(results)
    print(text)
    model = cpu_model()
    json_path = args.json or str(REPO / "benchmarks" / f"results-{cpu_slug(model)}.json")
    meta = {"machine": {"cpu_model": model, "cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
            "reference_tf215": REFERENCE_COST, "results": results, "table": text}
    Path(json_path).write_text(json.dumps(meta, indent=1))
    print(f"\nJSON: {json_path}", file=sys.stderr)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
