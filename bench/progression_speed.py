"""Speed of building progression videos at the paper's size (1360 x 768, 9 frames, 5 fps), per task and for the paper's set.

Two measurements, both with `build_progression_dataset` writing whole samples (frames as one lossless video per sample
by default, or PNGs with `--frame-format png`; the mp4 preview at half size; uniform + offline scene prompts) into a temporary folder:

1. per task: `--images` sample images x both strengths, one build per task in this process (one torch thread): the
   cost of each task's videos, in seconds and CPU-seconds per video, free of any process start-up;
2. the paper's set in miniature: `2 * --images` DIV2K-sized PNGs (2040 x 1356, made from the sample images and their
   mirror images) read from a folder and built into resolution, blur and lowlight x both strengths in ONE build with
   `--workers` processes, as the paper's set would be built (`progressive-ir make-data`); its wall time, less the
   workers' start-up (paid once per build), is scaled to 800 images (DIV2K train), i.e. to 4800 videos, and the
   start-up added once. Goal: under 60 minutes on a 2-core CPU.

    python bench/progression_speed.py                 # writes bench/results/progression_speed_cpu.json
    python bench/progression_speed.py --images 2 --tasks blur --no-paper-set

`--workers W --threads T` runs W build processes with T torch threads each (2 x 1 is best on 2 cores). The workers'
start-up (spawning W processes that import torch and this package) is measured on its own, reported, and subtracted
from the paper-like build's time before it is divided by the number of videos: with 72 videos it would otherwise
count about 65 times over, while the paper's build pays it once (the figure with it is reported too). The machine may be shared: the 1-minute
load average before and after is recorded, and CPU seconds (this process and its children: workers and ffmpeg) per
video are reported beside the wall time as a load-independent figure. The sample images are smoother than DIV2K's
photographs once enlarged, which makes the lossless video and the preview a little cheaper to encode than on DIV2K.
"""
import argparse, concurrent.futures, json, multiprocessing, os, resource, shutil, sys, tempfile, time
from pathlib import Path

import torch

from progressive_ir.core import env_info, resize_center_crop, save_image, write_json
from progressive_ir.progressions import PREVIEW_PRESET, PREVIEW_SCALE, STRENGTHS, TASKS, build_progression_dataset, make_progression
from progressive_ir.sources import sample_images

PAPER_IMAGES, PAPER_TASKS, GOAL_MINUTES, DIV2K_SIZE = 800, ("resolution", "blur", "lowlight"), 60.0, (2040, 1356)


def _cpu():
    "CPU seconds used so far by this process and its finished children (build workers, ffmpeg)."
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _load():
    "The 1-minute load average (other work on a shared machine slows the measurement), or None."
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _import_builder():
    import progressive_ir.progressions  # noqa: F401  (what a build worker imports before its first sample)


def worker_startup(workers):
    "Wall and CPU seconds to start `workers` spawned processes that import the builder (what each parallel build pays once)."
    c0, t = _cpu(), time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_import_builder) as pool:
        for f in [pool.submit(os.getpid) for _ in range(workers)]: f.result()  # each submission starts a process, as a build's do
    return dict(workers=workers, seconds=round(time.perf_counter() - t, 2), cpu_seconds=round(_cpu() - c0, 2))


def timed_build(out, sources, tasks, workers, threads, frame_format, size, frames):
    "Build `sources` x `tasks` x both strengths into `out`; return (videos, wall seconds, CPU seconds)."
    c0, t = _cpu(), time.perf_counter()
    m = build_progression_dataset(out, sources, tasks=tasks, strengths=STRENGTHS, frames=frames, size=size, fps=5, seed=0,
                                  workers=workers, threads=threads, frame_format=frame_format)
    sec, cpu = time.perf_counter() - t, _cpu() - c0
    summary = json.loads((Path(out) / "summary.json").read_text())
    if summary["failed"]: raise RuntimeError(f"benchmark build failed on {summary['failures']}")
    return summary["built"], sec, cpu


def per_video(n, sec, cpu, startup, workers):
    "Speed figures for `n` videos built in `sec` wall / `cpu` CPU seconds, with and without the workers' start-up."
    s = sec - (startup["seconds"] if workers > 1 else 0)
    c = cpu - (startup["cpu_seconds"] if workers > 1 else 0)
    return dict(videos=n, seconds=round(sec, 2), videos_per_s=round(n / s, 4), seconds_per_video=round(s / n, 3),
                cpu_seconds_per_video=round(c / n, 3), seconds_per_video_with_startup=round(sec / n, 3))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--images", type=int, default=6, help="sample images (x 2 strengths = videos per task)")
    ap.add_argument("--size", default="1360x768")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--frame-format", default="video", choices=["video", "png"])
    ap.add_argument("--no-paper-set", action="store_true", help="skip the paper-set measurement")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "progression_speed_cpu.json"))
    a = ap.parse_args(argv)
    load0 = _load()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    names = ["astronaut", "coffee", "motorcycle", "chelsea", "rocket", "hubble"][:a.images]
    imgs = sample_images(names)
    tmp = Path(tempfile.mkdtemp(prefix="progression_speed_"))
    torch.set_num_threads(a.threads)
    make_progression(imgs[names[0]], "blur", "mild", frames=3, size=(272, 160))  # warm-up (imports, ffmpeg in the page cache)
    startup = worker_startup(a.workers) if a.workers > 1 else dict(workers=1, seconds=0.0, cpu_seconds=0.0)
    print(f"{a.workers} worker(s) x {a.threads} thread(s); worker start-up {startup['seconds']} s ({startup['cpu_seconds']} CPU-s)", flush=True)
    per_task, paper = {}, None
    try:
        for task in a.tasks:
            n, sec, cpu = timed_build(tmp / task, imgs, (task,), 1, a.threads, a.frame_format, size, a.frames)
            per_task[task] = r = per_video(n, sec, cpu, startup, 1)
            print(f"{task:>10}: {n} videos in {sec:.1f} s = {r['videos_per_s']:.3f} videos/s in one process "
                  f"({r['seconds_per_video']:.2f} s/video; {r['cpu_seconds_per_video']:.2f} CPU-s/video)", flush=True)
        if not a.no_paper_set:
            folder = tmp / "div2k_like"; folder.mkdir()
            for name, img in imgs.items():
                big = resize_center_crop(img, DIV2K_SIZE)
                save_image(big, folder / f"{name}.png"); save_image(big.flip(-1), folder / f"{name}_mirrored.png")
            n, sec, cpu = timed_build(tmp / "paper", folder, PAPER_TASKS, a.workers, a.threads, a.frame_format, size, a.frames)
            r = per_video(n, sec, cpu, startup, a.workers)
            scale = PAPER_IMAGES / (2 * len(names))
            minutes = (startup["seconds"] + r["seconds_per_video"] * n * scale) / 60
            paper = dict(measured=dict(images=2 * len(names), image_size=list(DIV2K_SIZE), tasks=list(PAPER_TASKS), **r),
                         images=PAPER_IMAGES, videos=PAPER_IMAGES * len(PAPER_TASKS) * len(STRENGTHS), minutes=round(minutes, 1),
                         minutes_from_cpu_seconds_all_cores_busy=round(r["cpu_seconds_per_video"] * n * scale / 60 / os.cpu_count(), 1),
                         goal_minutes=GOAL_MINUTES, goal_met=minutes < GOAL_MINUTES)
            print(f"paper set in miniature: {n} videos from {2 * len(names)} DIV2K-sized PNGs in {sec:.1f} s "
                  f"({r['cpu_seconds_per_video']:.2f} CPU-s/video); the paper's {paper['videos']} videos: about {paper['minutes']} min "
                  f"(goal < {GOAL_MINUTES:g} min: {'met' if paper['goal_met'] else 'NOT met'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = dict(benchmark="progression_speed", command=" ".join([Path(sys.executable).name, *sys.argv]),
                  settings=dict(tasks=a.tasks, images=names, strengths=list(STRENGTHS), size=list(size), frames=a.frames, fps=5,
                                per_task_workers=1, paper_set_workers=a.workers, threads_per_worker=a.threads, frame_format=a.frame_format,
                                prompt_types=["uniform", "scene"], scene_prompt_source="offline-heuristic", preview=True,
                                preview_scale=PREVIEW_SCALE, preview_preset=PREVIEW_PRESET),
                  load_average_1min=dict(start=load0, end=_load()), worker_startup=startup, per_task=per_task, paper_set=paper,
                  env=env_info())
    write_json(result, a.out)
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
