"""Benchmark of unsupervised SimCSE training on this machine (a few minutes on 2 CPU cores).

    make bench        # or: python benchmarks/bench_simcse.py [--model NAME] [--steps 8]

Measures, in one run, with one model, batch, sequence length and thread count:

1. throughput of one training step (loss, backward, AdamW) of cl_toolkit's
   unsupervised SimCSE against sentence-transformers' MultipleNegativesRankingLoss
   fed (x, x) pairs — which encodes the two columns in separate forward passes with
   dropout on, i.e. unsupervised SimCSE too. The two are timed in alternation, so a
   change of machine speed during the run hits both alike; medians are reported;
2. peak memory of one step (forward + backward) of the cached (GradCache) loss at
   batch 64, 256 and 1024 against the plain loss at 64 (and 256): the rise of the
   process's peak resident memory (VmHWM) over its memory before the step, each
   configuration in a fresh subprocess, next to the bytes autograd keeps saved for
   backward (counted exactly, see ``cl_toolkit.simcse.saved_activation_bytes``);
3. the FLOP/s a training step achieves (FLOPs counted by
   ``torch.utils.flop_counter.FlopCounterMode``, divided by the median step time of 1)
   against the FLOP/s of a large float32 matrix product on this machine.
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
    from cl_toolkit.models import Encoder
    from cl_toolkit.simcse import cached_unsup_simcse_loss, saved_activation_bytes, unsup_simcse_loss

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
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
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
    parser.add_argument("--chunk", type=int, default=64, help="chunk size of the cached loss")
    parser.add_argument("--memory-batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(**json.loads(args.child))))
        return

    from cl_toolkit import setup

    cfg = setup(seed=0, quiet=True)
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.utils.flop_counter import FlopCounterMode

    from cl_toolkit.hub import resolve_model
    from cl_toolkit.models import Encoder
    from cl_toolkit.simcse import unsup_simcse_loss

    t_start = time.perf_counter()
    print(f"# bench_simcse: {cfg}  torch {torch.__version__}  model={args.model}  batch={args.batch}  "
          f"max_length={args.max_length}  threads={torch.get_num_threads()}")
    sentences = sentences_for_bench()
    batches = [sentences[i * args.batch:(i + 1) * args.batch] for i in range(args.steps + 2)]

    # ---- 1. throughput
    enc = Encoder.from_pretrained(args.model, pooling="mean", max_length=args.max_length).to(cfg.device).train()
    st = SentenceTransformer(resolve_model(args.model), device=str(cfg.device), local_files_only=cfg.offline)
    st.max_seq_length = args.max_length
    st.train()
    mnrl = MultipleNegativesRankingLoss(st, scale=20.0)  # scale = 1 / temperature (0.05)
    opt_ours = torch.optim.AdamW(enc.parameters(), lr=3e-5)
    opt_st = torch.optim.AdamW(st.parameters(), lr=3e-5)

    def step_ours(batch):
        loss = unsup_simcse_loss(enc, batch, 0.05)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_st(batch):
        features = [st.preprocess(batch), st.preprocess(batch)]  # the (x, x) pair columns
        features = [{k: v.to(cfg.device) if torch.is_tensor(v) else v for k, v in f.items()} for f in features]
        loss = mnrl(features, labels=None)
        loss.backward()
        opt_st.step()
        opt_st.zero_grad(set_to_none=True)

    def timed(fn, batch) -> float:
        if cfg.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(batch)
        if cfg.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times = {"cl_toolkit": [], "sentence-transformers": []}
    for i, batch in enumerate(batches):
        pair = [("cl_toolkit", step_ours), ("sentence-transformers", step_st)]
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):  # alternate who goes first
            t = timed(fn, batch)
            if i >= 2:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\n## 1. training-step throughput (unsupervised SimCSE, batch of sentences encoded twice)")
    print(f"{'implementation':28s} {'median s/step':>14s} {'sentences/s':>12s} {'min..max s':>14s}")
    for name, v in times.items():
        print(f"{name:28s} {med[name]:14.3f} {args.batch / med[name]:12.1f} {min(v):6.2f}..{max(v):5.2f}")
    ratio = med["sentence-transformers"] / med["cl_toolkit"]
    print(f"throughput ratio cl_toolkit / sentence-transformers MNRL: {ratio:.2f}x  ({args.steps} timed steps each)")

    # ---- 3. FLOP/s
    with FlopCounterMode(display=False) as counter:
        loss = unsup_simcse_loss(enc, batches[0], 0.05)
        loss.backward()
    enc.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    peak = matmul_flops()
    achieved = flops / med["cl_toolkit"]
    print("\n## 3. achieved FLOP/s of a cl_toolkit training step")
    print(f"FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.1f} GFLOP")
    print(f"achieved: {achieved / 1e9:.1f} GFLOP/s   float32 2048x2048 matmul on this machine: {peak / 1e9:.1f} GFLOP/s"
          f"   ratio: {achieved / peak:.0%}")
    del enc, st, opt_ours, opt_st

    # ---- 2. memory
    print(f"\n## 2. peak memory of one step (forward + backward), cached loss chunk={args.chunk}")
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
