"""Command line: ``python -m t2vlad_lib {demo,train,evaluate,ablate,search}`` (also ``t2vlad ...``).

The top of the layers: it may import anything. Its imports of the library sit inside the command functions,
so that ``--help`` and a mistyped argument answer at once, without loading torch (start-up time).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

EPILOG = (
    "Profiles: tutorial (DigitClips, CPU, ~3 min), tutorial-finetune (the same, MiniLM fine-tuned: far "
    "slower), fast (T2VLAD_FAST, <30 s), msrvtt-1ka (the paper, GPU)."
)


def _add_config_args(p: argparse.ArgumentParser, default: str = "tutorial") -> None:
    p.add_argument("--profile", default=default, help="profile name or YAML path (default: %(default)s)")
    _add_set_arg(p, "config overrides, e.g. epochs=5 model.num_clusters=16 optim.name=adamw")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the profile's)")


def _add_set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help=help_text)


def _config(args: argparse.Namespace):
    from .engine.config import load_config

    over = list(args.overrides)
    if args.seed is not None:
        over.append(f"seed={args.seed}")
    if getattr(args, "out", None):
        over.append(f"out_dir={args.out}")
    return load_config(args.profile, over)


def _table(results: dict[str, dict[str, float]]) -> str:
    from .core.metrics import format_metrics_table

    rows = {}
    for name, m in results.items():
        for side in ("t2v", "v2t"):
            rows[f"{name} {side}"] = {k.split("_", 1)[1]: v for k, v in m.items() if k.startswith(side + "_")}
    return format_metrics_table(rows)


def cmd_train(args: argparse.Namespace) -> int:
    from . import extensions  # noqa: F401  registers the distillation loss term with the trainer
    from .engine.train import train

    cfg = _config(args)
    res = train(cfg, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 0
    print(
        f"\nbest epoch {res.best_epoch} (selected on validation {cfg.select_metric}); "
        f"{res.seconds:.0f} s; run directory {res.run_dir}"
    )
    print(f"Test set ({cfg.data.test_protocol} captions), best checkpoint:\n")
    print(_table({"test": res.test}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train the tutorial profile (or fast under T2VLAD_FAST=1) and print the test table."""
    from .core.utils import is_fast

    args.profile = "fast" if is_fast() and args.profile == "tutorial" else args.profile
    return cmd_train(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.checkpoint import atomic_write_text
    from .engine.evaluate import evaluate
    from .engine.runs import load_run

    first = load_run(args.checkpoint)
    protocols = args.protocol or _protocols(first)
    results = {}
    for protocol in protocols:
        run = first if protocol == first.cfg.data.test_protocol else load_run(args.checkpoint,
                                                                               test_protocol=protocol)
        evalset = run.data.val if args.split == "val" else run.data.test
        if evalset is None:
            raise ValueError(f"{run.data.root}: no validation split to evaluate; use --split test")
        name = f"{args.split} ({protocol}{'' if args.terms is None else ', ' + args.terms})"
        results[name] = evaluate(run.model, evalset, run.cfg.eval_batch_size, terms=args.terms)
    print(_table(results))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0


def _protocols(run) -> list[str]:
    """The test protocols the run's data supports: "fixed" needs a caption index for the test split."""
    from .data.released import get_layout

    layout = get_layout(run.data.root, run.cfg.data.layout)
    return ["fixed", "all"] if "test" in layout.caption_index else ["all"]


def cmd_ablate(args: argparse.Namespace) -> int:
    from .course.ablate import ablate, summarize
    from .engine.config import parse_override

    extra = dict(parse_override(o) for o in args.overrides) or None
    table = ablate(
        args.profile,
        seeds=args.seeds,
        variants=args.variants or None,
        out_dir=args.out,
        extra=extra,
        progress=not args.quiet,
    )
    print(summarize(table).to_string())
    print(f"\nwritten: {Path(args.out) / 'results.csv'} and {Path(args.out) / 'results.md'}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .engine.search import search_gallery

    for rank, (vid, score, caption) in enumerate(
        search_gallery(args.query, args.checkpoint, args.profile, args.k), 1
    ):
        print(f'{rank:2d}. {vid:12s} {score:+.3f}  e.g. "{caption}"')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m t2vlad_lib", description=__doc__, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="train the tutorial profile on DigitClips and print the test table", epilog=EPILOG
    )
    _add_config_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo, resume=False, overwrite=False, out=None)

    p = sub.add_parser(
        "train",
        help="train a profile into runs/<profile>[-<hash of --set>]-seed<seed>/",
        epilog=EPILOG,
    )
    _add_config_args(p)
    p.add_argument("--out", default=None, help="run directory (default: from the profile, see above)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the test (or val) split")
    p.add_argument("--checkpoint", required=True, help="a best.pt / last.pt written by train")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument(
        "--protocol",
        nargs="+",
        choices=["fixed", "all"],
        default=None,
        help="fixed: one caption per test video (JSFusion 1k-A); all: every caption "
        "(default: both when the layout has a test caption index, else all)",
    )
    p.add_argument(
        "--terms",
        choices=["both", "local", "global"],
        default=None,
        help="similarity terms at test time (Table 4: 'local' is w/o global alignment; default: as trained)",
    )
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "ablate",
        help="the paper's Table 4 / Table 5 variants over seeds, cached",
        epilog="Variants: " + ", ".join(importlib.import_module("t2vlad_lib.course.ablate").VARIANTS),
    )
    p.add_argument("--profile", default="tutorial")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="*", default=None, help="variant names (default: all)")
    _add_set_arg(p, "overrides for every variant, e.g. epochs=5")
    p.add_argument("--out", default="runs/ablations", help="output directory (results.csv, results.md)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("search", help="print the top videos of the test gallery for a text query")
    p.add_argument("query", help='e.g. "a red seven moves left over grass"')
    p.add_argument("--checkpoint", default=None, help="default: runs/<profile>-seed0/best.pt")
    p.add_argument("--profile", default="tutorial")
    p.add_argument("-k", type=int, default=5)
    p.set_defaults(func=cmd_search)
    return parser


# errno -> what it means here, and what to do about it (``main``)
_OS_ERRORS = {
    "ENOSPC": ("the disk is full", "free some space, or point --out or T2VLAD_CACHE to another disk"),
    "EDQUOT": ("the disk quota is exceeded", "free some space, or point --out or T2VLAD_CACHE elsewhere"),
    "EROFS": ("the file system is read-only", "point --out or T2VLAD_CACHE to a writable directory"),
    "EACCES": ("permission denied", "check its permissions, or use another --out or T2VLAD_CACHE"),
    "EPERM": ("operation not permitted", "check its permissions"),
    "EEXIST": ("it exists and is not a directory (a file, a dangling symbolic link or a link loop)",
               "--out and T2VLAD_CACHE must name directories: remove it or choose another path"),
    "ENOTDIR": ("a part of the path is not a directory", "--out and T2VLAD_CACHE must name directories"),
    "ELOOP": ("symbolic links loop", "--out and T2VLAD_CACHE must name directories: fix the link"),
}


def main(argv: list[str] | None = None) -> int:
    """Run a command. Anticipated errors (bad config, bad data file, unusable checkpoint, a text model that
    is not there, an existing run, the run lock, a full or read-only disk, a path that is not a directory, a
    permission) print ``error: ...`` naming the file and what was expected, and exit with code 2, without a
    traceback."""
    import errno

    from .core.checkpoint import RunLockError
    from .model.text import TextModelUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RunLockError, TextModelUnavailable) as exc:  # one line, bad input
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        known = _OS_ERRORS.get(errno.errorcode.get(exc.errno or 0, ""))
        if known is None:
            raise
        print(f"error: {exc.filename or 'a file'}: {known[0]} ({exc.strerror}); {known[1]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
