"""Command line: ``python -m cl_toolkit eval sts --model NAME`` and ``train simcse``.

Training runs on several processes when launched by ``torchrun``::

    torchrun --nproc_per_node 4 -m cl_toolkit train simcse --supervised --batch-size 128 --out runs/sup

(4 processes × 128 = the paper's batch of 512; see :mod:`cl_toolkit.distributed`).
Threads per process follow ``CL_THREADS``, else ``OMP_NUM_THREADS``, else min(cores, 8).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "resolve_model_dir"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cl_toolkit", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate an encoder")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    sts = ev_sub.add_parser("sts", help="the 7-task STS table (Spearman x100, 'all' aggregation)")
    sts.add_argument("--model", required=True,
                     help="hub name, model folder, a `train` output folder, or 'tiny' (a random encoder)")
    sts.add_argument("--pooling", default="mean", help="cls | cls_before_pooler | mean | first_last_avg")
    sts.add_argument("--tasks", nargs="+", default=None, help="subset of sts12 sts13 sts14 sts15 sts16 stsb sickr")
    sts.add_argument("--batch-size", type=int, default=128)

    tr = sub.add_parser("train", help="train an encoder")
    tr_sub = tr.add_subparsers(dest="what", required=True)
    sim = tr_sub.add_parser("simcse", help="SimCSE (unsupervised by default)")
    sim.add_argument("--profile", choices=("quick", "full"), default=None)
    sim.add_argument("--supervised", action="store_true")
    sim.add_argument("--out", required=True, help="output folder (checkpoints, records, the saved model)")
    sim.add_argument("--model", default=None, help="override the profile's model")
    sim.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    sim.add_argument("--batch-size", type=int, default=None, help="examples per process and step")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--no-eval", action="store_true", help="skip the final 7-task STS table")
    return p


def resolve_model_dir(name: str) -> str:
    """A hub name as is; a folder that holds a model as is; a ``train`` output folder: its ``model/``.

    A folder that holds none of these raises ``FileNotFoundError`` in one line naming it.
    """
    path = Path(name).expanduser()
    if not path.exists():
        return name
    if not path.is_dir():
        raise FileNotFoundError(f"--model {name}: not a folder (expected a model folder or a `train` output folder)")
    if (path / "config.json").is_file() and ((path / "modules.json").is_file() or (path / "tokenizer_config.json").is_file()):
        return str(path)
    if (path / "model" / "config.json").is_file():
        return str(path / "model")
    raise FileNotFoundError(
        f"--model {name}: this folder holds no model (expected config.json and tokenizer files, "
        "as Encoder.save writes, or a `train simcse --out` folder with model/ inside)"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .config import setup

    cfg = setup(seed=getattr(args, "seed", 0), profile=getattr(args, "profile", None))
    from . import distributed

    if args.command == "eval":
        try:
            model = args.model if args.model == "tiny" else resolve_model_dir(args.model)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"[cl_toolkit] {cfg}", file=sys.stderr)
        from .data import STS_TASKS
        from .evaluate import format_table, sts_table
        from .models import Encoder

        encoder = Encoder.tiny(seed=0) if model == "tiny" else Encoder.from_pretrained(model, pooling=args.pooling)
        encoder.to(cfg.device)
        scores = sts_table(encoder, args.tasks or STS_TASKS, args.batch_size)
        print(format_table({args.model: scores}))
        return 0

    from .evaluate import format_table, sts_table
    from .run import run
    from .simcse import SimCSE

    overrides = {"seed": args.seed}
    for key in ("model", "steps", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    distributed.init()
    if distributed.world_size() > 1:
        overrides["chunk_size"] = None  # the batch is split over the processes instead of cached
    recipe = SimCSE.for_profile(cfg.profile, supervised=args.supervised, **overrides)
    out = Path(args.out)
    if distributed.is_main():
        print(f"[cl_toolkit] {cfg} processes={distributed.world_size()}", file=sys.stderr)
    trained = run(recipe, out_dir=out / "run", device=cfg.device if distributed.world_size() == 1 else None)
    if not distributed.is_main():
        distributed.shutdown()
        return 0
    encoder, result = trained.model, trained.result
    saved = encoder.save(out / "model")
    summary = {
        "profile": cfg.profile,
        "processes": distributed.world_size(),
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
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
