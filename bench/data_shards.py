"""Throughput of sharded data builds: the progression dataset built as 1 shard and as 2 shards side by side.

Each shard is its own process (`build_progression_dataset(..., shard="I/N")`), as a scheduler's job array or N
machines would run it, all writing into one folder; `merge_shards` then joins their manifests. The sources are
DIV2K-sized PNGs (2040 x 1356, made from the sample images and their mirror images) in a folder, built at the
paper's size (1360 x 768, 9 frames, one lossless video per sample, half-size preview, uniform + offline scene
prompts) into resolution, blur and low light x both strengths: the paper's set in miniature.

Reported per run: videos, wall seconds (from the first shard's start to the end of the merge), CPU seconds of all
shard processes and their ffmpeg children, and the merge's own seconds; videos per second and CPU-seconds per video
are given without the shards' process start-up (measured on its own: a cluster pays it once per shard, not once
per few videos as this small build would), videos per second with it too.
From these, the wall time of the paper's 4800 videos (800 DIV2K images) is projected onto 8 and 64 cores with one
single-threaded shard per core: `4800 x CPU-s per video / cores / efficiency + start-up + merge`, where the
efficiency is what two shards on this machine achieved against one (2 x 1-shard throughput = 1). The projection
assumes the cores are as fast as these, the sources are read at the rate they are here (a shared filesystem may
be slower), and the efficiency of two shards holds for more: figures to plan a cluster job, not a measurement of it.

    python bench/data_shards.py            # writes bench/results/data_shards_cpu.json (run on a quiet machine)
    python bench/data_shards.py --quick    # a dry run in seconds at a tiny size; writes nothing under bench/
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

PAPER_VIDEOS, PAPER_IMAGES, CORES = 4800, 800, (8, 64)
DIV2K_SIZE = (2040, 1356)
SHARD_CODE = """
import sys, torch
from progressive_ir.progressions import build_progression_dataset
torch.set_num_threads(1)
out, src, shard, size, frames, tasks = sys.argv[1:7]
build_progression_dataset(out, src, shard=shard, tasks=tasks.split(","), size=[int(v) for v in size.split("x")],
                          frames=int(frames), frame_format="video", threads=1)
"""


def _children_cpu():
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def _load():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def make_sources(folder, images, size):
    "2 x `images` PNGs of `size` from the sample images and their mirror images."
    from progressive_ir.core import resize_center_crop, save_image
    from progressive_ir.sources import SAMPLE_IMAGES, sample_images
    folder.mkdir(parents=True)
    names = list(SAMPLE_IMAGES)[:images]
    for name, img in sample_images(names).items():
        big = resize_center_crop(img, size)
        save_image(big, folder / f"{name}.png")
        save_image(big.flip(-1), folder / f"{name}_mirrored.png")
    return 2 * len(names)


def timed_build(out, src, shards, size, frames, tasks, startup):
    "Build `src` as `shards` shard processes side by side into `out`, then merge; return the figures."
    from progressive_ir.progressions import merge_shards, read_manifest
    cpu0, t0 = _children_cpu(), time.perf_counter()
    args = [str(out), str(src), None, f"{size[0]}x{size[1]}", str(frames), ",".join(tasks)]
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_CODE, *args[:2], f"{i + 1}/{shards}", *args[3:]])
             for i in range(shards)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"a shard failed: exit codes {codes}")
    t_merge = time.perf_counter()
    manifest = merge_shards(out)
    end = time.perf_counter()
    videos = len(read_manifest(manifest, absolute=False))
    wall, cpu = end - t0, _children_cpu() - cpu0
    net_wall, net_cpu = wall - startup["seconds"], cpu - shards * startup["cpu_seconds"]  # start-up paid once
    return dict(shards=shards, videos=videos, seconds=round(wall, 2), cpu_seconds=round(cpu, 2),
                videos_per_s=round(videos / net_wall, 4), cpu_seconds_per_video=round(net_cpu / videos, 3),
                videos_per_s_with_startup=round(videos / wall, 4), merge_seconds=round(end - t_merge, 3))


def startup():
    "Wall and CPU seconds for a process to start and import the builder: paid once by every shard."
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", "import progressive_ir.progressions"], check=True)
    return dict(seconds=round(time.perf_counter() - t0, 2), cpu_seconds=round(_children_cpu() - cpu0, 2))


def project(one, two, start):
    "Wall minutes of the paper's 4800 videos on 8 and 64 cores, one single-threaded shard per core."
    efficiency = two["videos_per_s"] / (2 * one["videos_per_s"])
    merge_per_video = two["merge_seconds"] / two["videos"]
    out = {}
    for cores in CORES:
        build = PAPER_VIDEOS * one["cpu_seconds_per_video"] / cores / min(1.0, efficiency)
        total = build + start["seconds"] + merge_per_video * PAPER_VIDEOS
        out[f"{cores}_cores"] = dict(minutes=round(total / 60, 1),
                                     ideal_minutes=round(PAPER_VIDEOS * one["cpu_seconds_per_video"] / cores / 60, 1))
    return dict(two_shard_efficiency=round(efficiency, 3), **out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="sample images (x 2 with the mirrored ones)")
    ap.add_argument("--size", default="1360x768")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--tasks", default="resolution,blur,lowlight")
    ap.add_argument("--quick", action="store_true", help="a dry run: 1 image, tiny frames, one task")
    ap.add_argument("--out", default=None, help="result JSON (default: bench/results/data_shards_cpu.json; "
                                                "with --quick: printed only)")
    a = ap.parse_args(argv)
    if a.quick:
        a.images, a.size, a.frames, a.tasks = 1, "136x80", 3, "blur"
    from progressive_ir.core import env_info, write_json
    size, tasks = tuple(int(v) for v in a.size.split("x")), a.tasks.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="data_shards_"))
    load0 = _load()
    try:
        n_src = make_sources(tmp / "src", a.images, (272, 180) if a.quick else DIV2K_SIZE)
        start = startup()
        one = timed_build(tmp / "one", tmp / "src", 1, size, a.frames, tasks, start)
        print(f"1 shard : {one['videos']} videos in {one['seconds']} s ({one['cpu_seconds_per_video']} CPU-s/video)")
        two = timed_build(tmp / "two", tmp / "src", 2, size, a.frames, tasks, start)
        print(f"2 shards: {two['videos']} videos in {two['seconds']} s ({two['cpu_seconds_per_video']} CPU-s/video)")
        same = (tmp / "one" / "manifest.jsonl").read_bytes() == (tmp / "two" / "manifest.jsonl").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    projection = project(one, two, start)
    print(f"paper's {PAPER_VIDEOS} videos: " + ", ".join(f"{c} cores ~{projection[f'{c}_cores']['minutes']} min"
                                                        for c in CORES))
    result = dict(benchmark="data_shards", command=" ".join([Path(sys.executable).name, *sys.argv]),
                  quick=a.quick, settings=dict(sources=n_src, source_size=None if a.quick else list(DIV2K_SIZE),
                                               size=list(size), frames=a.frames, tasks=tasks,
                                               strengths=["mild", "severe"], frame_format="video", preview=True,
                                               threads_per_shard=1),
                  load_average_1min=dict(start=load0, end=_load()), process_startup=start,
                  one_shard=one, two_shards=two, merged_manifests_identical=same,
                  paper_projection=dict(videos=PAPER_VIDEOS, images=PAPER_IMAGES, **projection), env=env_info())
    out = a.out or (None if a.quick else str(Path(__file__).parent / "results" / "data_shards_cpu.json"))
    if out:
        write_json(result, out)
        print(f"wrote {out}")
    else:
        print(json.dumps({k: result[k] for k in ("one_shard", "two_shards", "paper_projection")}, indent=1))
    return result


if __name__ == "__main__":
    main()
