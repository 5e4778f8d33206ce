"""The ``slimtorch`` command line.

Every command is a thin layer over the Python API; errors a user can fix
(bad recipe fields, missing data, corrupt files) print one clear line and exit
with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pydantic

from slimtorch.core.errors import ConfigError, SlimtorchError


class _Parser(argparse.ArgumentParser):
    """Usage mistakes print one line (``slimtorch: error: ...``) and exit 2, like a bad recipe field."""

    def error(self, message: str):  # noqa: D102 (argparse API)
        self.exit(2, f"slimtorch: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _bounded(kind: type, low: float, inclusive: bool = True):
    """An argparse type: ``kind`` (int / float) at least (or, not ``inclusive``, above) ``low``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if value != value or (value < low if inclusive else value <= low):  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _bounded(int, 1)
_nonneg_int = _bounded(int, 0)
positive_float = _bounded(float, 0, inclusive=False)
_nonneg_float = _bounded(float, 0)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 32}}', got {text!r}")
    return value


def add_model_args(p: argparse.ArgumentParser, what: str = "model file, run folder or zoo name") -> None:
    """``MODEL`` plus ``--class/--kwargs`` (your own class) and ``--hf/--task`` (a checkpoint directory)."""
    p.add_argument("model", nargs="?", help=f"{what}; with --class: its weights file")
    p.add_argument(
        "--class",
        dest="class_ref",
        metavar="MODULE:CLASS",
        help="your model class, 'pkg.module:Name' or 'path/file.py:Name' (imported: runs that code)",
    )
    p.add_argument("--kwargs", type=_json_object, help="the class's constructor arguments as JSON")
    p.add_argument("--hf", metavar="DIR", help="a Hugging Face checkpoint directory on disk (offline)")
    p.add_argument(
        "--task",
        choices=["sequence-classification", "sentence-embedding", "causal-lm"],
        help="with --hf (default sequence-classification)",
    )


def model_from_args(args: argparse.Namespace):
    from slimtorch.api import resolve_model

    return resolve_model(args.model, class_ref=args.class_ref, kwargs=args.kwargs, hf=args.hf, task=args.task)


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "mnist") -> None:
    p.add_argument(
        "--data",
        default=default,
        help="dataset name (see `slimtorch list`)"
        + ("; default mnist, text for a language model" if default is None else ""),
    )
    p.add_argument("--data-folder", help="folder for datasets read from files (idx, cifar10)")


def _data(args: argparse.Namespace):
    from slimtorch.data import get_dataset

    kwargs = {"folder": args.data_folder} if getattr(args, "data_folder", None) else {}
    return get_dataset(args.data, **kwargs)


def _relaunch_with_torchrun(nproc: int) -> int:
    """Re-run this very command under ``torch.distributed.run`` with ``nproc`` local processes."""
    import subprocess

    argv = sys.argv[1:]
    i = argv.index("--nproc")
    argv = argv[:i] + argv[i + 2 :]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "slimtorch",
        *argv,
    ]
    return subprocess.call(cmd)


def cmd_run(args: argparse.Namespace) -> int:
    from slimtorch.pipeline import load_recipe, run_recipe

    if args.nproc and args.nproc > 1:
        load_recipe(args.recipe, args.overrides)  # fail fast, once, before starting processes
        return _relaunch_with_torchrun(args.nproc)

    recipe = load_recipe(args.recipe, args.overrides)
    out = args.output or f"runs/{recipe.name}"
    if recipe.sweep is not None:
        from slimtorch.pipeline.sweep import run_sweep

        runner = run_sweep
    else:
        runner = run_recipe
    res = runner(recipe, out, force=args.force, resume=args.resume, verbose=not args.quiet, argv=sys.argv)
    from slimtorch.train.distributed import is_main, shutdown

    if is_main():
        print(f"report: {res.out_dir / 'report.html'} (also report.md, report.json, results.json)", flush=True)
    # every rank leaves the process group together: a rank that tears gloo down while another
    # still talks to it can abort ("terminate called without an active exception")
    shutdown()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from slimtorch.report import write_report

    paths = write_report(args.run_dir)
    print("\n".join(str(p) for p in paths.values()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from slimtorch.report import compare_runs

    print(compare_runs(args.run_a, args.run_b))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from slimtorch.pipeline import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    stages = recipe.stage_configs()
    from slimtorch.models.user import UserModelSource, check_user_source

    if isinstance(recipe.model, UserModelSource):
        check_user_source(recipe.model)  # imports the class the recipe names; checks its kwargs
    print(f"{args.recipe}: OK — recipe '{recipe.name}', {len(stages)} stage(s): " + ", ".join(s[0] for s in stages))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from slimtorch.core.fileio import prepare_output_dir
    from slimtorch.core.seed import seed_everything, set_threads
    from slimtorch.io import save_model
    from slimtorch.train import OptimizerConfig, TrainConfig, fit

    out = Path(args.output)
    if out.exists() and not args.force and not args.resume:
        raise SlimtorchError(f"'{out}' exists; pass --force to overwrite it or --resume to continue")
    cfg = TrainConfig.from_dict(
        {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "optimizer": OptimizerConfig.from_dict(
                {"lr": args.lr, "weight_decay": args.weight_decay, "nesterov": True}
            ),
        }
    )
    seed_everything(args.seed)
    set_threads(args.threads)
    model = model_from_args(args)
    train, test = _data(args)
    ckpt_dir = prepare_output_dir(out.with_name(out.name + ".ckpt"), force=args.force, resume=args.resume)
    fit(model, train, cfg, eval_data=test, checkpoint_dir=ckpt_dir, resume=args.resume)
    save_model(model, out)
    print(f"saved {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from slimtorch.cli_lm import eval_lm, load_model_arg, load_onnx_arg
    from slimtorch.measure.lm import is_causal_lm
    from slimtorch.train import evaluate

    _, onnx_module = load_onnx_arg(args)
    if onnx_module is not None:  # an exported decoder: perplexity computed by ONNX Runtime
        return eval_lm(args, onnx_module)
    model = load_model_arg(args)
    if is_causal_lm(model):  # perplexity on held-out text (slimtorch.cli_lm)
        return eval_lm(args, model)
    if args.data == "text":
        raise ConfigError(
            f"--data text is for causal language models; this model is a {type(model).__name__}", field="data"
        )
    args.data = args.data or "mnist"
    _, test = _data(args)
    res = evaluate(model, test)
    print(json.dumps({"accuracy": res.accuracy, "error": res.error, "loss": res.loss, "n": res.n}))
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from slimtorch.core.seed import set_threads
    from slimtorch.measure import measure, print_table

    set_threads(args.threads)
    model = model_from_args(args)
    test = None
    if args.data != "none":
        _, test = _data(args)
        example = test[0][0].unsqueeze(0)
    else:
        from slimtorch.api import example_input

        example = example_input(model)
    ref = args.model or args.hf or args.class_ref
    artifact = args.model if args.model and Path(args.model).is_file() else None
    rec = measure(model, example, name=Path(ref).name, data=test, artifact=artifact)
    print_table([rec.to_dict()])
    if args.json:
        from slimtorch.core.fileio import atomic_write_json

        atomic_write_json(args.json, rec.to_dict())
        print(f"wrote {args.json}")
    return 0


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise SlimtorchError(f"'{path}' exists; pass --force to overwrite it")


def cmd_pack(args: argparse.Namespace) -> int:
    from slimtorch.encode.model import pack_model
    from slimtorch.encode.report import compression_report, render_report

    out = Path(args.output)
    _refuse_overwrite(out, args.force)
    model = model_from_args(args)
    data = pack_model(model, out, method=args.method, index=args.index, max_codebook=args.max_codebook)
    print(render_report(compression_report(data)))
    src = Path(args.model) if args.model else None
    if src is not None and src.is_file():
        print(f"{src}: {src.stat().st_size} B -> {out}: {len(data)} B ({src.stat().st_size / len(data):.1f}x)")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from slimtorch.encode.model import load_packed
    from slimtorch.io import save_model

    out = Path(args.output)
    _refuse_overwrite(out, args.force)
    model = load_packed(Path(args.slim))
    save_model(model, out, sparse=not args.dense)
    print(f"wrote {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from slimtorch.core.stages import STAGES
    from slimtorch.data import list_datasets
    from slimtorch.models import list_models
    from slimtorch.pipeline.runner import run_recipe  # noqa: F401  (registers the stages)

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    print("stages:   " + ", ".join(STAGES.names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="slimtorch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a recipe end to end")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. stages.0.epochs=2")
    p.add_argument("-o", "--output", help="run folder (default runs/<recipe name>)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in its folder")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--nproc",
        type=_nonneg_int,
        default=0,
        help="train with N local processes (DistributedDataParallel via torchrun; gloo on CPU)",
    )
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("validate", help="check a recipe without running it")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("train", help="train a model (zoo name, model file or --class) and save it")
    add_model_args(p, "zoo model name or model file")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    _add_data_args(p)
    p.add_argument("--epochs", type=_nonneg_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--weight-decay", type=_nonneg_float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--force", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser(
        "eval",
        help="top-1 accuracy of a model file, run folder or zoo model; perplexity of a "
        "language model (compressed LM folder, LM run folder, zoo LM)",
    )
    add_model_args(p, "model file, run folder, compressed LM folder or zoo name")
    _add_data_args(p, default=None)
    from slimtorch.cli_lm import add_export_parser, add_generate_parser, add_lm_eval_args

    add_lm_eval_args(p)
    p.set_defaults(fn=cmd_eval)

    add_generate_parser(sub)
    add_export_parser(sub)

    for name in ("measure", "inspect"):
        p = sub.add_parser(name, help="parameters, sparsity, MACs, size, latency, accuracy")
        add_model_args(p)
        _add_data_args(p)
        p.add_argument("--threads", type=positive_int)
        p.add_argument("--json", help="also write the record to this JSON file")
        p.set_defaults(fn=cmd_measure)

    p = sub.add_parser("pack", help="entropy-code a model file into a .slim file (Deep Compression stage 3)")
    add_model_args(p, "model file (weights already pruned / shared), run folder or zoo name")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--method", choices=["auto", "huffman", "ans"], default="auto")
    p.add_argument("--index", choices=["auto", "gap", "gap-raw", "bitmask"], default="auto")
    p.add_argument("--max-codebook", type=positive_int, default=256, help="max distinct values of a shared weight")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_pack)

    p = sub.add_parser("unpack", help="decode a .slim file into a safetensors model file")
    p.add_argument("slim")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--dense", action="store_true", help="store zeros densely")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_unpack)

    p = sub.add_parser("report", help="re-render report.html/md/json of a finished run")
    p.add_argument("run_dir")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("compare", help="two runs' final measurements side by side")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(fn=cmd_compare)

    from slimtorch.auto.cli import add_auto_parser

    add_auto_parser(sub)

    p = sub.add_parser("list", help="list models, datasets and recipe stages")
    p.set_defaults(fn=cmd_list)
    return parser


def _flag_names(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """``dest -> --flag`` of one subcommand, so a config field error names the flag the user typed."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest: a.option_strings[-1] for a in sub._actions if a.option_strings}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as exc:
        msg, flag = str(exc), _flag_names(parser, args.command).get((exc.field or "").split(".")[-1])
        if flag and exc.field:
            msg = msg.replace(f"'{exc.field}'", f"{flag}", 1)
        print(f"slimtorch: error: {msg}", file=sys.stderr)
        return 2
    except SlimtorchError as exc:
        print(f"slimtorch: error: {exc}", file=sys.stderr)
        return 2
    except pydantic.ValidationError as exc:  # a config built without from_dict: still one line
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or exc.title
        print(
            f"slimtorch: error: invalid value for '{where}': {err['msg']} (got {err.get('input')!r})", file=sys.stderr
        )
        return 2
    except FileNotFoundError as exc:
        print(f"slimtorch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slimtorch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
