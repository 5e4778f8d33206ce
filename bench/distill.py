"""Knowledge distillation on real MNIST: Hinton, Vinyals & Dean (2015), section 3, and KD for a pruned LeNet-5.

Part 1 reproduces the paper's MNIST experiment at a fraction of its training time:
a 784-1200-1200-10 teacher with dropout and +-2 pixel jitter (paper: 67 test
errors), a 784-800-800-10 student trained from scratch without regularization
(paper: 146 errors), and the same student distilled at T = 20 (paper: 74 errors).
The distilled student sees un-jittered images, so the teacher's logits are
computed once and cached (``cache_teacher=True``).

Part 2 compares fine-tuning a 70 %-channel-pruned LeNet-5 with and without KD
from the unpruned network. The pruned model is built here, as a named architecture
(so the figures do not depend on :mod:`slimtorch.prune.structured`'s choices):
``thinner("lenet5", 0.3)`` (6-15-150 instead of
20-50-500) receives the 30 % of filters / neurons of a trained LeNet-5 with the
largest L1 norm (Li et al., 2017, "Pruning filters for efficient ConvNets"),
with the matching input slices of the next layer.

Usage: ``python bench/distill.py [--quick]``; writes ``bench/results/distill.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from slimtorch.core import seed_everything, set_threads
from slimtorch.core.fileio import atomic_write_json
from slimtorch.data import load_mnist, subset
from slimtorch.distill import DistillConfig, distill_fit, thinner
from slimtorch.io import load_model, save_model
from slimtorch.measure.env import environment
from slimtorch.models import create_model
from slimtorch.train import OptimizerConfig, TrainConfig, evaluate, fit

PAPER = {"teacher": 67, "student_scratch": 146, "student_distilled": 74}
OUT = Path(__file__).parent / "results" / "distill.json"
TEACHER_DIR = Path(tempfile.gettempdir()) / "slimtorch-bench-distill"


def errors(model: nn.Module, test) -> int:
    r = evaluate(model, test)
    return round(r.error * r.n)


def gap_closed(scratch: float, distilled: float, teacher: float) -> float:
    return (scratch - distilled) / (scratch - teacher) if scratch != teacher else float("nan")


def hinton_mnist(train, test, epochs: int, teacher_epochs: int, temperature: float, alpha: float, teacher_lr: float,
                 verbose: bool) -> dict:
    train_cfg = TrainConfig(epochs=epochs, batch_size=128, optimizer=OptimizerConfig(lr=0.05), seed=0)
    # the heavily regularized teacher (dropout + jitter) underfits at the students' lr, and in few epochs:
    # at 30 epochs it made 134 errors, twice the paper's 67, which left little gap for distillation to close
    teacher_cfg = train_cfg.replace(epochs=teacher_epochs, jitter=2, optimizer={"lr": teacher_lr})
    # the teacher is kept between runs (keyed by its epochs) so student settings can be re-run cheaply
    teacher_file = TEACHER_DIR / f"mlp_1200x2_e{teacher_epochs}_lr{teacher_lr:g}_n{len(train)}.safetensors"
    if teacher_file.is_file():
        teacher = load_model(teacher_file)
        t_teacher = float(teacher.slimtorch_file_metadata["train_seconds"])
    else:
        t0 = time.perf_counter()
        seed_everything(0)
        teacher = create_model("mlp_1200x2")  # dropout 0.5, input dropout 0.2
        fit(teacher, train, teacher_cfg, verbose=verbose)
        t_teacher = time.perf_counter() - t0
        save_model(teacher, teacher_file, metadata={"train_seconds": t_teacher})

    t0 = time.perf_counter()
    seed_everything(1)
    scratch = create_model("mlp_800x2")  # no dropout, no jitter, as in the paper
    init_state = copy.deepcopy(scratch.state_dict())
    fit(scratch, train, train_cfg, verbose=verbose)
    t_scratch = time.perf_counter() - t0

    t0 = time.perf_counter()
    student = create_model("mlp_800x2")
    student.load_state_dict(init_state)  # same initialisation as the scratch student
    kd_cfg = DistillConfig(loss="kl", temperature=temperature, alpha=alpha, cache_teacher=True, train=train_cfg)
    distill_fit(student, teacher, train, kd_cfg, verbose=verbose)
    t_student = time.perf_counter() - t0

    e = {"teacher": errors(teacher, test), "student_scratch": errors(scratch, test),
         "student_distilled": errors(student, test)}
    closed = gap_closed(e["student_scratch"], e["student_distilled"], e["teacher"])
    paper_closed = gap_closed(PAPER["student_scratch"], PAPER["student_distilled"], PAPER["teacher"])
    return {
        "test_examples": len(test),
        "rows": [
            {"model": "teacher 784-1200-1200-10, dropout, jitter +-2", "errors": e["teacher"],
             "paper_errors": PAPER["teacher"], "train_seconds": round(t_teacher, 1)},
            {"model": "student 784-800-800-10 from scratch (no regularization)", "errors": e["student_scratch"],
             "paper_errors": PAPER["student_scratch"], "train_seconds": round(t_scratch, 1)},
            {"model": f"student 784-800-800-10 distilled, T={temperature:g}", "errors": e["student_distilled"],
             "paper_errors": PAPER["student_distilled"], "train_seconds": round(t_student, 1)},
        ],
        "gap_closed": round(closed, 3),
        "paper_gap_closed": round(paper_closed, 3),
        "required_gap_closed": 0.6,
        # a teacher no better than the scratch student leaves no gap to close
        "passed": bool(e["teacher"] < e["student_scratch"] and closed >= 0.6),
        "config": {"teacher": teacher_cfg.to_dict(), "students": train_cfg.to_dict(), "distill": kd_cfg.to_dict()},
        "note": (
            f"The teacher trains {teacher_epochs} epochs and the students {epochs} (SGD momentum 0.9, cosine schedule, "
            f"teacher lr {teacher_lr:g}, students lr 0.05); the paper trained far longer "
            "and used max-norm weight constraints, so absolute errors are higher than the paper's. The distilled "
            "student starts from the same initial weights as the scratch one and sees no jitter (teacher logits cached)."
        ),
    }


@torch.no_grad()
def l1_transplant(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Copy the largest-L1 filters / neurons of a LeNet-5 into a thinner LeNet-5 (top-k per layer)."""

    def top(weight: torch.Tensor, k: int) -> torch.Tensor:
        return weight.abs().flatten(1).sum(1).topk(k).indices.sort().values

    k1, k2, k3 = dst.conv1.out_channels, dst.conv2.out_channels, dst.fc1.out_features
    i1, i2, i3 = top(src.conv1.weight, k1), top(src.conv2.weight, k2), top(src.fc1.weight, k3)
    spatial = src.fc1.in_features // src.conv2.out_channels  # 4 x 4 positions per channel
    cols = (i2[:, None] * spatial + torch.arange(spatial)).reshape(-1)  # flatten order is (C, H, W)
    dst.conv1.weight.copy_(src.conv1.weight[i1]); dst.conv1.bias.copy_(src.conv1.bias[i1])
    dst.conv2.weight.copy_(src.conv2.weight[i2][:, i1]); dst.conv2.bias.copy_(src.conv2.bias[i2])
    dst.fc1.weight.copy_(src.fc1.weight[i3][:, cols]); dst.fc1.bias.copy_(src.fc1.bias[i3])
    dst.fc2.weight.copy_(src.fc2.weight[:, i3]); dst.fc2.bias.copy_(src.fc2.bias)
    return dst


def pruned_lenet5(train, test, epochs: int, ft_epochs: int, seeds: list[int], verbose: bool) -> dict:
    seed_everything(0)
    base = create_model("lenet5")
    t0 = time.perf_counter()
    fit(base, train, TrainConfig(epochs=epochs, optimizer=OptimizerConfig(lr=0.05), seed=0), verbose=verbose)
    t_base = time.perf_counter() - t0
    pruned = l1_transplant(base, thinner("lenet5", 0.3)).eval()
    ft = TrainConfig(epochs=ft_epochs, optimizer=OptimizerConfig(lr=0.01))
    kd = DistillConfig(loss="kl", temperature=4.0, alpha=0.9, cache_teacher=True, train=ft)
    cache = Path(__file__).parent / "results" / ".lenet5_teacher_cache.safetensors"
    plain, distilled = [], []
    try:
        for s in seeds:
            m = copy.deepcopy(pruned)
            fit(m, train, ft.replace(seed=s), verbose=verbose)
            plain.append(errors(m, test))
            m = copy.deepcopy(pruned)
            distill_fit(m, base, train, kd.replace(train=ft.replace(seed=s)), cache_path=cache, verbose=verbose)
            distilled.append(errors(m, test))
    finally:
        cache.unlink(missing_ok=True)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "unpruned": {"arch": "lenet5 20-50-500", "params": params(base), "errors": errors(base, test),
                     "train_epochs": epochs, "train_seconds": round(t_base, 1)},
        "pruned": {"arch": "lenet5_slim 6-15-150 (top-L1 30 % of filters/neurons copied)", "params": params(pruned),
                   "errors_before_finetune": errors(pruned, test)},
        "finetune_epochs": ft_epochs,
        "seeds": seeds,
        "finetune_without_kd_errors": plain,
        "finetune_with_kd_errors": distilled,
        "mean_without_kd": statistics.mean(plain),
        "mean_with_kd": statistics.mean(distilled),
        "kd_wins": sum(d < p for d, p in zip(distilled, plain)),
        "passed": statistics.mean(distilled) < statistics.mean(plain),
        "config": {"finetune": ft.to_dict(), "distill": kd.to_dict()},
        "note": "Pruning by copying the top-L1 30 % of each layer's filters/neurons; "
                "both fine-tunes start from the same pruned weights with the same data order per seed.",
    }


def render_markdown(result: dict) -> str:
    """The results section of docs/distillation.md, generated from the JSON (never typed by hand)."""
    lines = []
    h = result.get("hinton2015_mnist")
    if h:
        lines += ["| MNIST, 10,000 test images | our errors | paper's errors |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['errors']} | {r['paper_errors']} |" for r in h["rows"]]
        lines += ["", f"Gap from scratch student to teacher closed by distillation: {h['gap_closed']:.0%} "
                  f"(paper: {h['paper_gap_closed']:.0%}; required: {h['required_gap_closed']:.0%}: "
                  f"{'met' if h['passed'] else 'not met'}). {h['note']}", ""]
        lines.append("")
    p = result.get("pruned_lenet5_kd")
    if p:
        lines += ["| 70 %-channel-pruned LeNet-5 | test errors per seed | mean |", "|---|---|---|",
                  f"| unpruned LeNet-5 ({p['unpruned']['train_epochs']} epoch(s)) | {p['unpruned']['errors']} | |",
                  f"| pruned, before fine-tuning | {p['pruned']['errors_before_finetune']} | |",
                  f"| fine-tuned {p['finetune_epochs']} epoch(s) without KD | {p['finetune_without_kd_errors']} "
                  f"| {p['mean_without_kd']} |",
                  f"| fine-tuned {p['finetune_epochs']} epoch(s) with KD from the unpruned net "
                  f"| {p['finetune_with_kd_errors']} | {p['mean_with_kd']} |", "", p["note"], ""]
    env = result.get("environment", {})
    lines.append(f"Environment: torch {env.get('versions', {}).get('torch')}, {env.get('torch_threads')} thread(s), "
                 f"{env.get('cpu')}. Source: `bench/results/distill.json`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny run to check the script (not a result)")
    p.add_argument("--epochs", type=int, default=100, help="epochs of each Hinton student run")
    p.add_argument("--teacher-epochs", type=int, default=100, help="epochs of the Hinton teacher (dropout + jitter)")
    p.add_argument("--temperature", type=float, default=20.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--teacher-lr", type=float, default=0.1)
    p.add_argument("--lenet-epochs", type=int, default=1)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="1 by default: on a shared, oversubscribed CPU two threads ran 8x slower")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--part", choices=["all", "hinton", "lenet"], default="all")
    p.add_argument("--render", action="store_true", help="print the docs' results section from --out and exit")
    args = p.parse_args(argv)
    if args.render:
        print(render_markdown(json.loads(args.out.read_text())))
        return
    set_threads(args.threads)
    train, test = load_mnist()
    if args.quick:
        train, test = subset(train, 3000, seed=0), subset(test, 1000)
        args.epochs, args.teacher_epochs, args.lenet_epochs, args.finetune_epochs, args.seeds = 1, 1, 1, 1, 1
    t0 = time.perf_counter()
    result = {"benchmark": "distill", "quick": args.quick}
    parts = [k for k, part in (("hinton2015_mnist", "hinton"), ("pruned_lenet5_kd", "lenet"))
             if args.part in ("all", part)]
    if args.part in ("all", "hinton"):
        result["hinton2015_mnist"] = hinton_mnist(
            train, test, args.epochs, args.teacher_epochs, args.temperature, args.alpha, args.teacher_lr, True
        )
        print({k: v for k, v in result["hinton2015_mnist"].items() if k != "config"}, file=sys.stderr)
    if args.part in ("all", "lenet"):
        result["pruned_lenet5_kd"] = pruned_lenet5(
            train, test, args.lenet_epochs, args.finetune_epochs, list(range(args.seeds)), True
        )
        print({k: v for k, v in result["pruned_lenet5_kd"].items() if k != "config"}, file=sys.stderr)
    # each part's command and seconds, so a file merged from two runs says which run made which part
    command = " ".join([Path(sys.executable).name, *sys.argv])
    result["commands"] = {k: command for k in parts}
    result["seconds"] = {k: round(time.perf_counter() - t0, 1) for k in parts}  # of the run that made it
    result["environment"] = environment()
    if args.part != "all" and args.out.is_file():  # running one part keeps the other part's figures
        old = json.loads(args.out.read_text())
        result = {**old, **result, "commands": {**old.get("commands", {}), **result["commands"]},
                  "seconds": {**old.get("seconds", {}), **result["seconds"]}}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
