"""``slimtorch auto MODEL --data mnist --max-drop 0.5 --target size --budget 20m -o OUT``."""

from __future__ import annotations

import argparse


def cmd_auto(args: argparse.Namespace) -> int:
    import torch

    from slimtorch.auto import AutoConfig, auto_compress, parse_budget
    from slimtorch.cli import model_from_args
    from slimtorch.core.errors import ConfigError
    from slimtorch.data import get_dataset

    fields = {
        "target": args.target,
        "max_drop": args.max_drop,
        "budget_s": parse_budget(args.budget),
        "max_candidates": args.max_candidates,
        "seed": args.seed,
        "threads": args.threads,
        "finetune_epochs": args.finetune_epochs,
        "kmeans_epochs": args.kmeans_epochs,
        "refine_epochs": args.refine_epochs,
        "distill_alpha": args.distill_alpha,
        "finetune_samples": args.finetune_samples,
        "int8": not args.no_int8,
        "selection_samples": args.selection_samples,
    }
    if args.bits:
        try:
            fields["bits"] = tuple(int(b) for b in args.bits.split(","))
        except ValueError:
            raise ConfigError(
                f"--bits: expected comma-separated integers like 6,5,4, got {args.bits!r}", "bits"
            ) from None
    cfg = AutoConfig.from_dict({k: v for k, v in fields.items() if v is not None})  # before any slow work
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"folder": args.data_folder} if args.data_folder else {}
    train, test = get_dataset(args.data, **kwargs)
    res = auto_compress(model_from_args(args), train, test, cfg, args.output, force=args.force, resume=args.resume)
    print(f"wrote {res.out_dir}/best.slim, best.safetensors, best.json, pareto.json, report.html")
    return 0 if res.met else 1


def add_auto_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``slimtorch auto`` on the CLI's subparsers (exit status 1 when no candidate met the budget)."""
    p = subparsers.add_parser("auto", help="search the smallest / fastest model within an accuracy budget")
    from slimtorch.cli import add_model_args

    add_model_args(p, "trained model file, run folder or zoo name")
    p.add_argument("--data", default="mnist", help="dataset name (see `slimtorch list`)")
    p.add_argument("--data-folder", help="folder for datasets read from files (idx, cifar10)")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.5,
        help="allowed top-1 accuracy drop in percentage points (agreement for label-free data)",
    )
    p.add_argument("--target", choices=["size", "latency"], default="size")
    p.add_argument("--budget", help="wall-clock budget: 20m, 90s, 1h or seconds (default: none)")
    p.add_argument("--max-candidates", type=int)
    p.add_argument("--bits", help="k-means bit widths to try, safest first, e.g. 6,5,4")
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--kmeans-epochs", type=int)
    p.add_argument(
        "--refine-epochs",
        type=int,
        help="size target: re-search the rungs above the best one with this many fine-tuning epochs",
    )
    p.add_argument("--finetune-samples", type=int, help="fine-tune on the first N training examples")
    p.add_argument(
        "--selection-samples",
        type=int,
        help="the last N training examples form the selection split every choice is made on "
        "(default: 10 %%); the eval data only gives the chosen model's test figure",
    )
    p.add_argument(
        "--distill-alpha",
        type=float,
        help="weight of the original model's soft targets in fine-tuning (0: labels only; default 0.7)",
    )
    p.add_argument("--no-int8", action="store_true", help="latency target: do not try INT8 deployment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("-o", "--output", required=True, help="search folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing search folder")
    p.add_argument("--resume", action="store_true", help="continue the search recorded in the folder")
    p.set_defaults(fn=cmd_auto)
    return p
