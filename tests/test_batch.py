"""Batch segmentation of many scenes on a Dask cluster: one seamless layer, resumable."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import Resampling, calculate_default_transform, reproject

from farmseg.batch.mosaic import group_scenes, write_group_vrt
from farmseg.batch.run import BatchOptions, BatchResult, batch_job, default_job_dir
from farmseg.batch.scenes import find_scenes
from farmseg.errors import InputError
from farmseg.jobs import Progress, drain, run_job
from farmseg.pipeline.segment import SegmentOptions, TileOptions, segment_job
from tests.conftest import SAMPLE, write_crop

distributed = pytest.importorskip("distributed")

TILES = TileOptions(tile=256, overlap=32)  # stride 224: blocks of 224 px, many block edges
X0, Y0, SIDE = 256, 256, 256  # four abutting 256 px scenes of the sample, a 512 px mosaic


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, shared by the tests of this module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def quarters(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("quarters")
    return [write_crop(SAMPLE, folder / "scenes" / f"q{i}{j}.tif", X0 + SIDE * j,
                       Y0 + SIDE * i, SIDE, SIDE) for i in range(2) for j in range(2)]


@pytest.fixture(scope="module")
def single(quarters):
    """The reference: the same area segmented as one raster, without the batch."""
    mosaic = write_crop(SAMPLE, quarters[0].parent.parent / "mosaic.tif", X0, Y0, 2 * SIDE,
                        2 * SIDE)
    return drain(segment_job(SegmentOptions(mosaic, mosaic.with_suffix(".gpkg"),
                                            tiles=TILES))).layer


@pytest.fixture(scope="module")
def batch_of_quarters(quarters, cluster):
    return _batch(quarters, quarters[0].parent.parent / "quarters.gpkg", cluster)


def _batch(inputs: list[Path], output: Path, cluster=None, on_progress=None, **options
           ) -> BatchResult:
    opts = BatchOptions(list(inputs), SegmentOptions(inputs[0], output, tiles=TILES),
                        scheduler=cluster.scheduler_address if cluster else None,
                        block_px=200, **options)
    return run_job(batch_job(opts), on_progress)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ua, ub = shapely.union_all(a), shapely.union_all(b)
    return shapely.area(shapely.intersection(ua, ub)) / shapely.area(shapely.union(ua, ub))


def _same(a, b) -> bool:
    return len(a) == len(b) and bool(shapely.equals(a.geoms, b.geoms).all())


def _no_overlaps(geoms: np.ndarray) -> bool:
    return bool(np.isclose(shapely.area(geoms).sum(), shapely.area(shapely.union_all(geoms)),
                           rtol=1e-6))


def test_abutting_scenes_give_the_fields_of_their_mosaic(batch_of_quarters, single, quarters):
    layer = batch_of_quarters.layer
    assert batch_of_quarters.blocks == 9
    assert abs(len(layer) - len(single)) <= 0.01 * len(single)
    assert _iou(layer.geoms, single.geoms) >= 0.99
    assert _no_overlaps(layer.geoms)
    with rasterio.open(quarters[0]) as src:
        east, south = src.bounds.right, src.bounds.bottom
    seams = shapely.union(shapely.LineString([(east, -1e8), (east, 1e8)]),
                          shapely.LineString([(-1e8, south), (1e8, south)]))
    crossing = layer.geoms[shapely.intersects(layer.geoms, seams)]
    assert len(crossing) >= 3  # fields over file edges are single polygons
    assert all(g.geom_type == "Polygon" for g in crossing)


def test_a_folder_and_a_vrt_of_the_scenes_give_the_same_layer(batch_of_quarters, quarters,
                                                              cluster, tmp_path):
    vrt = write_group_vrt(group_scenes(find_scenes(quarters)[0])[0], tmp_path / "all.vrt")
    from_vrt = _batch([vrt], tmp_path / "vrt.gpkg", cluster)
    from_folder = _batch([quarters[0].parent], tmp_path / "folder.gpkg", cluster)
    assert len(from_vrt.scenes) == 1 and len(from_folder.scenes) == 4
    assert _same(from_vrt.layer, batch_of_quarters.layer)
    assert _same(from_folder.layer, batch_of_quarters.layer)


def test_overlapping_scenes_give_no_duplicates(single, cluster, tmp_path):
    west = write_crop(SAMPLE, tmp_path / "west.tif", X0, Y0, 320, 2 * SIDE)
    east = write_crop(SAMPLE, tmp_path / "east.tif", X0 + 192, Y0, 320, 2 * SIDE)
    result = _batch([west, east], tmp_path / "overlap.gpkg", cluster)
    assert _no_overlaps(result.layer.geoms)
    assert abs(len(result.layer) - len(single)) <= 0.01 * len(single)
    assert _iou(result.layer.geoms, single.geoms) >= 0.99


def _reprojected(source: Path, target: Path, crs: str) -> Path:
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width,
                                                               src.height, *src.bounds)
        profile = {**src.profile, "crs": crs, "transform": transform, "width": width,
                   "height": height, "nodata": 0}
        with rasterio.open(target, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=Resampling.bilinear)
    return target


def test_scenes_in_two_crs_make_one_layer_without_overlaps(cluster, tmp_path):
    west = write_crop(SAMPLE, tmp_path / "west.tif", X0, Y0, 320, 384)
    east = _reprojected(write_crop(SAMPLE, tmp_path / "e.tif", X0 + 256, Y0, 320, 384),
                        tmp_path / "east_3857.tif", "EPSG:3857")
    result = _batch([west, east], tmp_path / "two.geojson", cluster)
    layer = result.layer
    assert layer.crs == rasterio.open(west).crs  # the first scene's CRS
    assert _no_overlaps(layer.geoms)
    x = shapely.get_x(shapely.centroid(layer.geoms))
    middle = rasterio.open(west).bounds.left + 288
    assert (x < middle).sum() >= 3 and (x > middle).sum() >= 3


def test_an_interrupted_job_resumes_with_the_unfinished_blocks(batch_of_quarters, quarters,
                                                               tmp_path):
    output = tmp_path / "resumed.gpkg"

    def stop_after_three(report: Progress) -> None:
        if report.stage == "batch" and report.done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _batch(quarters, output, on_progress=stop_after_three, workers=1)
    assert not output.exists()
    finished = len(list((default_job_dir(output) / "blocks").glob("*.pieces.npz")))
    assert 3 <= finished < 9
    resumed = _batch(quarters, output, workers=1)
    assert resumed.computed == 9 - finished
    assert _same(resumed.layer, batch_of_quarters.layer)
    assert not default_job_dir(output).exists()


def test_a_killed_worker_does_not_change_the_result(batch_of_quarters, quarters, cluster,
                                                    tmp_path):
    client = distributed.Client(cluster)
    killed = []

    def kill_one(report: Progress) -> None:
        if report.stage == "batch" and report.done >= 1 and not killed:
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        result = _batch(quarters, tmp_path / "killed.gpkg", cluster, on_progress=kill_one)
    finally:
        client.close()
    assert killed
    assert _same(result.layer, batch_of_quarters.layer)


def test_a_bad_scene_is_named_and_skipped_only_when_asked(quarters, cluster, tmp_path):
    bad = tmp_path / "scenes" / "broken.tif"
    bad.parent.mkdir()
    bad.write_bytes(quarters[0].read_bytes()[:2000])
    write_crop(SAMPLE, tmp_path / "scenes" / "good.tif", X0, Y0, SIDE, SIDE)
    output = tmp_path / "out.gpkg"
    with pytest.raises(InputError, match="broken.tif"):
        _batch([tmp_path / "scenes"], output, cluster)
    assert not output.exists()
    result = _batch([tmp_path / "scenes"], output, cluster, skip_bad=True)
    assert [Path(s.path).name for s in result.scenes] == ["good.tif"]
    assert "broken.tif" in str(result.skipped[0])
    assert output.exists()


def test_the_cli_segments_a_folder_on_a_cluster(quarters, cluster, tmp_path, capsys):
    from farmseg.cli import main

    out = tmp_path / "fields.geojson"
    code = main(["segment", str(quarters[0].parent), "-o", str(out), "--tile", "256",
                 "--overlap", "32", "--block", "200", "--scheduler", cluster.scheduler_address])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "from 4 scenes" in printed and out.is_file()
    assert not default_job_dir(out).exists()  # the job folder goes once the layer is written
    (quarters[0].parent / "broken.tif").write_bytes(b"not a tiff")
    try:
        code = main(["segment", str(quarters[0].parent), "-o", str(tmp_path / "again.gpkg"),
                     "--scheduler", cluster.scheduler_address])
    finally:
        (quarters[0].parent / "broken.tif").unlink()
    err = capsys.readouterr().err
    assert code == 2 and "broken.tif" in err and "Traceback" not in err
    assert not (tmp_path / "again.gpkg").exists()
