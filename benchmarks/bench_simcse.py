"""Benchmark of unsupervised SimCSE training on this machine (a few minutes on 2 CPU cores).

    make bench        # or: python benchmarks/bench_simcse.py [--model NAME] [--steps 8]

Threads: ``--threads``, else ``CL_THREADS``, else ``OMP_NUM_THREADS``, else min(cores, 8);
the memory subprocesses use the same number. Measures, in one run, with one model, batch,
sequence length and thread count:

1. throughput of one training step (loss, backward, AdamW), all in float32, of
   cl_toolkit's unsupervised SimCSE (ONE forward pass over the batch stacked on itself,
   as SimCSE's own code does), of the same loss with two forward passes, and of
   sentence-transformers' MultipleNegativesRankingLoss fed (x, x) pairs — which encodes
   the two columns in separate forward passes with dropout on, i.e. unsupervised SimCSE
   too. In the same rounds, cl_toolkit's step under
   ``torch.autocast("cpu", dtype=torch.bfloat16)``, reported apart (other numerics).
   The steps are timed in rotating order, so a change of machine speed during the run
   hits all alike; medians and their ratios are reported;
2. STS-B test Spearman of the pretrained model encoded in float32 and under bfloat16
   autocast, and the encoding speed of each;
3. the FLOP/s a training step achieves (FLOPs counted by
   ``torch.utils.flop_counter.FlopCounterMode``, divided by the median step time of 1)
   against the FLOP/s of a large float32 matrix product on this machine;
4. peak memory of one step (forward + backward) of the cached (GradCache) loss at
   batch 64, 256 and 1024 against the plain loss at 64 (and 256): the rise of the
   process's peak resident memory (VmHWM) over its memory before the step, each
   configuration in a fresh subprocess, next to the bytes autograd keeps saved for
   backward (counted exactly, see ``cl_toolkit.memory.saved_activation_bytes``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def sentences_for_bench() -> list[str]:
    """The STS-B train sentences in a fixed random order (the file is grouped by source, short ones first)."""
    import random

    from cl_toolkit.data import load_sentences

    sentences = load_sentences("stsb-train")
    random.Random(0).shuffle(sentences)
    return sentences


def _vm(field: str) -> int:
    """A field of /proc/self/status in bytes (Linux), or -1."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


# --------------------------------------------------------------------------- 2. memory, in a subprocess
def memory_child(model: str, batch: int, cached: bool, chunk: int, max_length: int) -> dict:
    from cl_toolkit import setup

    setup(seed=0, quiet=True)
    from cl_toolkit.memory import saved_activation_bytes
    from cl_toolkit.models import Encoder
    from cl_toolkit.simcse import cached_unsup_simcse_loss, unsup_simcse_loss

    enc = Encoder.from_pretrained(model, pooling="mean", max_length=max_length).train()
    sentences = sentences_for_bench()[:batch]
    width = int(enc.tokenize(sentences)["attention_mask"].sum(1).max())
    if cached:
        step = lambda: cached_unsup_simcse_loss(enc, sentences, 0.05, chunk_size=chunk).backward()
    else:
        step = lambda: unsup_simcse_loss(enc, sentences, 0.05).backward()
    try:  # reset the peak (VmHWM) to the current resident memory, so that it measures this step only
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    peak = _vm("VmHWM")
    enc.zero_grad(set_to_none=True)
    saved = saved_activation_bytes(step, exclude=enc.parameters())
    return {"peak_rise": peak - before, "saved": saved, "seconds": seconds, "width": width}


def memory_in_subprocess(args, batch: int, cached: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(
        {"model": args.model, "batch": batch, "cached": cached, "chunk": args.chunk, "max_length": args.max_length})]
    env = {**os.environ, "CL_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- 1. throughput, 3. FLOP/s
def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per implementation (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: CL_THREADS, else OMP_NUM_THREADS, else min(cores, 8))")
    parser.add_argument("--chunk", type=int, default=64, help="chunk size of the cached loss")
    parser.add_argument("--memory-batches", type=int, nargs="*", default=[64, 256, 1024],
                        help="batches of the cached loss in section 4 (none: skip section 4)")
    parser.add_argument("--no-sts", action="store_true", help="skip section 2 (STS-B in float32 and bfloat16)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(**json.loads(args.child))))
        return
    from cl_toolkit.config import default_threads

    args.threads = args.threads or default_threads()  # CL_THREADS, else OMP_NUM_THREADS, else min(cores, 8)

    from cl_toolkit import setup

    cfg = setup(seed=0, quiet=True, threads=args.threads)
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.utils.flop_counter import FlopCounterMode

    from cl_toolkit.losses import info_nce
    from cl_toolkit.models import Encoder, resolve_model
    from cl_toolkit.simcse import unsup_simcse_loss

    t_start = time.perf_counter()
    cpu = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    bf16_flag = "avx512_bf16" if "avx512_bf16" in cpu else ("amx_bf16" if "amx_bf16" in cpu else "no bf16 flag")
    print(f"# bench_simcse: {cfg}  torch {torch.__version__}  model={args.model}  batch={args.batch}  "
          f"max_length={args.max_length}  threads={torch.get_num_threads()}  cpu: {bf16_flag}")
    sentences = sentences_for_bench()
    batches = [sentences[i * args.batch:(i + 1) * args.batch] for i in range(args.steps + 2)]

    # ---- 1. throughput
    load = lambda: Encoder.from_pretrained(args.model, pooling="mean", max_length=args.max_length).to(cfg.device).train()
    enc1, enc2, enc_bf16 = load(), load(), load()
    st = SentenceTransformer(resolve_model(args.model), device=str(cfg.device), local_files_only=cfg.offline)
    st.max_seq_length = args.max_length
    st.train()
    mnrl = MultipleNegativesRankingLoss(st, scale=20.0)  # scale = 1 / temperature (0.05)
    opts = {name: torch.optim.AdamW(m.parameters(), lr=3e-5) for name, m in
            (("one", enc1), ("two", enc2), ("bf16", enc_bf16), ("st", st))}

    def finish(loss, opt):
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step_one_pass(batch):  # cl_toolkit: one forward pass over [x; x]
        finish(unsup_simcse_loss(enc1, batch, 0.05), opts["one"])

    def step_two_passes(batch):  # the same loss, the two views from two forward passes
        tokens = enc2.tokenize(batch)
        finish(info_nce(enc2(tokens), enc2(tokens), 0.05), opts["two"])

    def step_bf16(batch):  # cl_toolkit's step under bfloat16 autocast (float32 weights and optimiser)
        with torch.autocast(cfg.device.type, dtype=torch.bfloat16):
            loss = unsup_simcse_loss(enc_bf16, batch, 0.05)
        finish(loss, opts["bf16"])

    def step_st(batch):
        features = [st.preprocess(batch), st.preprocess(batch)]  # the (x, x) pair columns
        features = [{k: v.to(cfg.device) if torch.is_tensor(v) else v for k, v in f.items()} for f in features]
        finish(mnrl(features, labels=None), opts["st"])

    def timed(fn, batch) -> tuple[float, float]:
        """Wall seconds and CPU seconds of this process (all its threads) for one step."""
        if cfg.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(batch)
        if cfg.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0

    impls = [
        ("cl_toolkit (one pass)", step_one_pass),
        ("cl_toolkit (two passes)", step_two_passes),
        ("sentence-transformers MNRL", step_st),
        ("cl_toolkit one pass, bf16", step_bf16),
    ]
    times = {name: [] for name, _ in impls}
    cpu_times = {name: [] for name, _ in impls}
    for i, batch in enumerate(batches):
        k = i % len(impls)
        for name, fn in impls[k:] + impls[:k]:  # rotate who goes first
            t, c = timed(fn, batch)
            if i >= 2:
                times[name].append(t)
                cpu_times[name].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_times.items()}
    print("\n## 1. training-step throughput (unsupervised SimCSE, loss + backward + AdamW)")
    print("wall = elapsed time; CPU = CPU time of the process (all threads), less sensitive to other jobs")
    print(f"{'implementation':28s} {'wall s/step':>11s} {'sentences/s':>11s} {'min..max s':>12s} {'CPU s/step':>10s}")
    for name, v in times.items():
        print(f"{name:28s} {med[name]:11.3f} {args.batch / med[name]:11.1f} {min(v):5.2f}..{max(v):5.2f} "
              f"{cpu_med[name]:10.3f}")
    st_name, one, two, bf = "sentence-transformers MNRL", "cl_toolkit (one pass)", "cl_toolkit (two passes)", \
        "cl_toolkit one pass, bf16"
    ratio = lambda m, a, b: f"{m[a] / m[b]:.2f}x"
    print(f"float32, same model, batch, length and threads ({args.steps} timed steps each, rotating order);"
          " throughput ratios, wall (CPU):")
    print(f"  cl_toolkit (one pass) / MNRL:   {ratio(med, st_name, one)} ({ratio(cpu_med, st_name, one)})")
    print(f"  cl_toolkit (two passes) / MNRL: {ratio(med, st_name, two)} ({ratio(cpu_med, st_name, two)})")
    print(f"  one pass / two passes:          {ratio(med, two, one)} ({ratio(cpu_med, two, one)})")
    print(f"bfloat16 autocast (other numerics): one pass bf16 / one pass fp32: {ratio(med, one, bf)} "
          f"({ratio(cpu_med, one, bf)}), / MNRL fp32: {ratio(med, st_name, bf)} ({ratio(cpu_med, st_name, bf)})")

    # ---- 3. FLOP/s (printed after section 2)
    with FlopCounterMode(display=False) as counter:
        loss = unsup_simcse_loss(enc1, batches[0], 0.05)
        loss.backward()
    enc1.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    del enc1, enc2, enc_bf16, st, opts, mnrl

    # ---- 2. STS-B test in float32 and under bfloat16 autocast
    if not args.no_sts:
        from cl_toolkit.data import load_sts
        from cl_toolkit.evaluate import spearman_cosine

        pairs = load_sts("stsb", "test")
        n_unique = len(pairs.sentences())
        enc = Encoder.from_pretrained(args.model, pooling="mean").to(cfg.device).eval()
        rows = []
        for label, ctx in (("float32", None), ("bfloat16 autocast", torch.bfloat16)):
            t0 = time.perf_counter()
            if ctx is None:
                score = spearman_cosine(enc, pairs)
            else:
                with torch.autocast(cfg.device.type, dtype=ctx):
                    score = spearman_cosine(enc, pairs)
            rows.append((label, score, n_unique / (time.perf_counter() - t0)))
        print(f"\n## 2. STS-B test Spearman x100 of the pretrained model (mean pooling, full length, "
              f"{len(pairs)} pairs, {n_unique} sentences)")
        print(f"{'encoding':20s} {'Spearman':>9s} {'sentences/s':>12s}")
        for label, score, speed in rows:
            print(f"{label:20s} {score:9.2f} {speed:12.1f}")
        print(f"bf16 - fp32: {rows[1][1] - rows[0][1]:+.2f} points; encoding speed-up {rows[1][2] / rows[0][2]:.2f}x")
        del enc

    peak = matmul_flops()
    achieved = flops / med["cl_toolkit (one pass)"]
    print("\n## 3. achieved FLOP/s of a cl_toolkit training step (float32)")
    print(f"FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.1f} GFLOP")
    print(f"achieved: {achieved / 1e9:.1f} GFLOP/s   float32 2048x2048 matmul on this machine: {peak / 1e9:.1f} GFLOP/s"
          f"   ratio: {achieved / peak:.0%}")

    # ---- 4. memory
    if not args.memory_batches:
        print(f"\n# total {time.perf_counter() - t_start:.0f} s")
        return
    print(f"\n## 4. peak memory of one step (forward + backward), cached loss chunk={args.chunk}")
    print("peak rise = VmHWM after the step - VmRSS before it, in a fresh process (includes the gradients);")
    print("saved = bytes autograd keeps for backward at its peak (parameters excluded); tokens = the batch's padded length")
    print(f"{'loss':8s} {'batch':>6s} {'tokens':>7s} {'peak rise MB':>13s} {'saved MB':>9s} {'step s':>7s}")
    configs = [("plain", b) for b in sorted({args.batch, 256})] + [("cached", b) for b in args.memory_batches]
    rows = {}
    for kind, b in configs:
        r = memory_in_subprocess(args, b, kind == "cached")
        rows[(kind, b)] = r
        print(f"{kind:8s} {b:6d} {r['width']:7d} {r['peak_rise'] / 2**20:13.0f} {r['saved'] / 2**20:9.1f} {r['seconds']:7.1f}")
    base = rows[("plain", args.batch)]
    for b in args.memory_batches:
        r = rows[("cached", b)]
        print(f"cached@{b} / plain@{args.batch}: peak rise {r['peak_rise'] / base['peak_rise']:.2f}x, "
              f"saved {r['saved'] / base['saved']:.2f}x")
    print(f"\n# total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
