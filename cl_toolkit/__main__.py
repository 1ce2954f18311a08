"""Command line: ``python -m cl_toolkit eval sts --model NAME`` and ``train simcse``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cl_toolkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate an encoder")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    sts = ev_sub.add_parser("sts", help="the 7-task STS table (Spearman x100, 'all' aggregation)")
    sts.add_argument("--model", required=True, help="hub name, local folder, or 'tiny' (a random encoder)")
    sts.add_argument("--pooling", default="mean", help="cls | cls_before_pooler | mean | first_last_avg")
    sts.add_argument("--tasks", nargs="+", default=None, help="subset of sts12 sts13 sts14 sts15 sts16 stsb sickr")
    sts.add_argument("--batch-size", type=int, default=128)

    tr = sub.add_parser("train", help="train an encoder")
    tr_sub = tr.add_subparsers(dest="what", required=True)
    sim = tr_sub.add_parser("simcse", help="SimCSE (unsupervised by default)")
    sim.add_argument("--profile", choices=("quick", "full"), default=None)
    sim.add_argument("--supervised", action="store_true")
    sim.add_argument("--out", required=True, help="output folder (checkpoints, best weights, the saved model)")
    sim.add_argument("--model", default=None, help="override the profile's model")
    sim.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--no-eval", action="store_true", help="skip the final 7-task STS table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .config import setup

    cfg = setup(seed=getattr(args, "seed", 0), profile=getattr(args, "profile", None))
    print(f"[cl_toolkit] {cfg}", file=sys.stderr)
    from .data import STS_TASKS
    from .evaluate import format_table, sts_table
    from .models import Encoder

    if args.command == "eval":
        encoder = Encoder.tiny(seed=0) if args.model == "tiny" else Encoder.from_pretrained(args.model, pooling=args.pooling)
        encoder.to(cfg.device)
        scores = sts_table(encoder, args.tasks or STS_TASKS, args.batch_size)
        print(format_table({args.model: scores}))
        return 0

    from .simcse import SimCSEConfig, train_simcse

    overrides = {"seed": args.seed}
    if args.model:
        overrides["model"] = args.model
    if args.steps:
        overrides["steps"] = args.steps
    sim_cfg = SimCSEConfig.for_profile(cfg.profile, supervised=args.supervised, **overrides)
    out = Path(args.out)
    encoder, result = train_simcse(sim_cfg, out_dir=str(out / "run"), device=cfg.device)
    saved = encoder.save(out / "model")
    summary = {
        "profile": cfg.profile,
        "steps": result.steps_done,
        "seconds": round(result.seconds, 1),
        "best_stsb_dev": result.best_score,
        "best_step": result.best_step,
        "model_dir": str(saved),
    }
    if not args.no_eval:
        scores = sts_table(encoder)
        summary["sts"] = scores
        print(format_table({"simcse-" + ("sup" if args.supervised else "unsup"): scores}))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "sts"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
