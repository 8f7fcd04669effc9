"""Speed of building progression videos at the paper's size (1360 x 768, 9 frames, 5 fps), per task.

Builds `--images` sample images x both strengths for each task with `build_progression_dataset` (frames as one
lossless video per sample by default, or PNGs with `--frame-format png`; preview mp4, uniform + offline scene prompts: the whole sample, as written for training) into a temporary folder,
and reports videos/s and the time extrapolated to the paper's set: 800 DIV2K images x 3 tasks (resolution, blur,
lowlight) x 2 strengths = 4800 videos, plus reading and resizing 800 DIV2K-sized PNGs (measured on a synthetic
2040 x 1356 PNG). Goal: under 60 minutes for that set on a 2-core CPU.

    python bench/progression_speed.py                 # writes bench/results/progression_speed_cpu.json
    python bench/progression_speed.py --configs 2x1 --images 2 --tasks blur

Each configuration `WxT` runs W build processes with T torch threads each; the extrapolation uses the fastest.
The machine may be shared: the 1-minute load average before and after is recorded, and CPU seconds (this process
and its children) per video are reported beside the wall time as a load-independent figure.
"""
import argparse, json, os, resource, shutil, sys, tempfile, time
from pathlib import Path

import torch

from progressive_ir.core import env_info, load_image, resize_center_crop, save_image, write_json
from progressive_ir.progressions import STRENGTHS, TASKS, build_progression_dataset, make_progression
from progressive_ir.sources import sample_images

PAPER_IMAGES, PAPER_TASKS, GOAL_MINUTES = 800, ("resolution", "blur", "lowlight"), 60.0


def div2k_like_load_seconds(tmp, size, repeats=3):
    "Seconds to read a 2040 x 1356 PNG (DIV2K's typical size) and resize/crop it to `size`."
    big = resize_center_crop(sample_images(["motorcycle"])["motorcycle"], (2040, 1356))
    path = save_image(big, Path(tmp) / "div2k_like.png")
    t = time.perf_counter()
    for _ in range(repeats): resize_center_crop(load_image(path), size)
    return (time.perf_counter() - t) / repeats


def _cpu():
    "CPU seconds used so far by this process and its finished children (build workers, ffmpeg)."
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _load():
    "The 1-minute load average (other work on a shared machine slows the measurement), or None."
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--images", type=int, default=2, help="sample images per task (x 2 strengths = videos per task)")
    ap.add_argument("--size", default="1360x768")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--configs", nargs="+", default=["2x1"], help="WORKERSxTHREADS per configuration (2x1 is best on 2 cores)")
    ap.add_argument("--frame-format", default="video", choices=["video", "png"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "progression_speed_cpu.json"))
    a = ap.parse_args(argv)
    load0 = _load()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    names = ["astronaut", "coffee", "motorcycle", "chelsea", "rocket", "hubble"][:a.images]
    imgs = sample_images(names)
    tmp = Path(tempfile.mkdtemp(prefix="progression_speed_"))
    load_s = div2k_like_load_seconds(tmp, size)
    configs = [tuple(int(v) for v in c.lower().split("x")) for c in a.configs]
    results = {}
    try:
        for workers, threads in configs:
            key, per_task = f"{workers}x{threads}", {}
            print(f"configuration {key}: {workers} build process(es), {threads} torch thread(s) each", flush=True)
            for task in a.tasks:
                torch.set_num_threads(threads)
                make_progression(imgs[names[0]], task, "mild", frames=3, size=(272, 160))  # warm-up (imports, ffmpeg cache)
                c0, t = _cpu(), time.perf_counter()
                build_progression_dataset(tmp / key / task, imgs, tasks=(task,), strengths=STRENGTHS, frames=a.frames, size=size,
                                          fps=5, seed=0, workers=workers, threads=threads, frame_format=a.frame_format)
                sec, cpu = time.perf_counter() - t, _cpu() - c0
                n = len(names) * len(STRENGTHS)
                per_task[task] = dict(videos=n, seconds=round(sec, 2), videos_per_s=round(n / sec, 4), seconds_per_video=round(sec / n, 3),
                                      cpu_seconds_per_video=round(cpu / n, 3))
                print(f"{task:>10}: {n} videos in {sec:.1f} s = {n / sec:.3f} videos/s ({sec / n:.2f} s/video; "
                      f"{cpu / n:.2f} CPU-s/video)", flush=True)
            results[key] = per_task
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = min(results, key=lambda k: sum(v["seconds_per_video"] for v in results[k].values()))
    per_task = results[best]
    paper = None
    if all(t in per_task for t in PAPER_TASKS):
        sec = sum(PAPER_IMAGES * len(STRENGTHS) * per_task[t]["seconds_per_video"] for t in PAPER_TASKS) + PAPER_IMAGES * load_s
        cpu_sec = sum(PAPER_IMAGES * len(STRENGTHS) * per_task[t]["cpu_seconds_per_video"] for t in PAPER_TASKS) + PAPER_IMAGES * load_s
        paper = dict(configuration=best, images=PAPER_IMAGES, tasks=list(PAPER_TASKS), strengths=list(STRENGTHS), videos=PAPER_IMAGES * 3 * len(STRENGTHS),
                     div2k_load_seconds_per_image=round(load_s, 3), minutes=round(sec / 60, 1),
                     minutes_from_cpu_seconds_all_cores_busy=round(cpu_sec / 60 / os.cpu_count(), 1), goal_minutes=GOAL_MINUTES,
                     goal_met=sec / 60 < GOAL_MINUTES)
        print(f"paper set ({paper['videos']} videos): about {paper['minutes']} min (goal < {GOAL_MINUTES:g} min: "
              f"{'met' if paper['goal_met'] else 'NOT met'})")
    result = dict(benchmark="progression_speed", command=" ".join([Path(sys.executable).name, *sys.argv]),
                  settings=dict(tasks=a.tasks, images=names, strengths=list(STRENGTHS), size=list(size), frames=a.frames, fps=5,
                                configs=a.configs, frame_format=a.frame_format, prompt_types=["uniform", "scene"],
                                scene_prompt_source="offline-heuristic", preview=True, preview_preset="ultrafast"),
                  load_average_1min=dict(start=load0, end=_load()), configurations=results, best=best, paper_set=paper, env=env_info())
    write_json(result, a.out)
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
