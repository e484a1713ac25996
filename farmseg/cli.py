"""The `farmseg` command line: a thin front on the core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from farmseg import __version__
from farmseg.errors import Cancelled, FarmsegError
from farmseg.jobs import run_job
from farmseg.progressbar import ProgressBar


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"farmseg: error: {message}\n")
        sys.exit(2)


def _cmd_train(args: argparse.Namespace) -> int:
    from farmseg.training.trainer import TrainConfig, train_job

    config = TrainConfig(data=args.data, out=args.out, base=args.base, arch=args.arch,
                         encoder=args.encoder, epochs=args.epochs, tile=args.tile,
                         batch=args.batch, lr=args.lr, val_fraction=args.val_fraction,
                         freeze_encoder=args.freeze_encoder, device=args.device,
                         seed=args.seed, resume=args.resume, checkpoint=args.checkpoint)
    bar = ProgressBar(args.quiet)

    def report(progress) -> None:
        if progress.stage == "epoch":
            bar.close()
            print(progress.message, flush=True)
        else:
            bar(progress)

    result = run_job(train_job(config), report)
    bar.close()
    print(f"model written to {result['bundle']}")
    if result.get("base_val_field_iou") is not None:
        print(f"validation field IoU: base {result['base_val_field_iou']:.3f} -> "
              f"fine-tuned {result['val_field_iou']:.3f}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from farmseg.bundle import list_bundles

    for bundle in list_bundles():
        print(f"{bundle.describe()}  [{bundle.path}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="farmseg", description="Farm field segmentation for GeoTIFFs.")
    parser.add_argument("--version", action="version", version=f"farmseg {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("train", help="train or fine-tune a model on labeled tiles")
    p.add_argument("--data", required=True, help="folder with images/ and masks/ or fields/")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--base", help="start from this bundle (name or folder)")
    p.add_argument("--arch", default="unet")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--tile", type=int, default=256, help="crop size")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--freeze-encoder", action="store_true")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from the weights in --out (optimizer state is not kept)")
    p.add_argument("--checkpoint", action="store_true",
                   help="write the best epoch so far after each epoch (marked partial)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("models", help="list bundled and user models")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 cancelled, 1 unexpected)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FarmsegError as exc:
        sys.stderr.write(f"\nfarmseg: error: {exc}\n")
        return 2
    except (Cancelled, KeyboardInterrupt):
        sys.stderr.write("\nfarmseg: cancelled\n")
        return 130
