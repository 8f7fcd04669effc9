"""Speed of building progression videos at the paper's size (1360 x 768, 9 frames, 5 fps): per task, for the
paper's set, and where the CPU time of one video goes.

Every build runs `build_progression_dataset` with the settings of experiment 01's `paper` profile
(`nbs/experiments/01_progression_data.yml`, read here: frames, size, frame format, preview, prompt types,
degradation constants, workers, threads), writing whole samples (uniform + offline scene prompts) into a
temporary folder; `--size`, `--frames`, `--workers`, `--threads`, `--frame-format` and `--preview` set one of them
over the profile, and the JSON records the settings used. Three measurements:

1. per task: `--images` sample images x both strengths, one build per task in this process (one torch thread):
   the cost of each task's videos, in seconds and CPU-seconds per video, free of any process start-up;
2. the paper's set in miniature, `--repeats` times: `2 * --images` DIV2K-sized PNGs (2040 x 1356, made from the
   sample images and their mirror images) read from a folder and built into resolution, blur and lowlight x both
   strengths in ONE build with the profile's worker processes, as `progressive-ir make-data` builds the paper's
   set. Each run's wall time, less the workers' start-up (paid once per build), is scaled to 800 images (DIV2K
   train), i.e. 4800 videos, and the start-up added once; the JSON gives every run, their median and their spread;
3. phases: CPU seconds per video of each step of writing a sample (load the PNG, resize, degrade per task, PSNR
   records, the files as built, prompts, SHA-256), measured step by step in this process (one torch thread;
   ffmpeg's CPU counted as children's), beside steps for comparison (the float load, the lossless video through
   the ffmpeg program with HuffYUV and with Ut Video, the preview, PNG frames); their sum over the steps as built
   is projected onto the paper's 4800 videos on 2 cores.

    python bench/progression_speed.py            # the full measurement; writes bench/results/progression_speed_cpu.json
    python bench/progression_speed.py --quick    # a short check (see QUICK), written to --out

Goal (issue 17): the paper's 4800 videos in at most 15 minutes on 2 cores. The machine may be shared: the load
averages before and after, and the CPU other processes used meanwhile (psutil), are recorded with each
measurement; CPU seconds per video (this process and its children: workers and ffmpeg) are reported beside the
wall time, and compare variants better than wall time on a busy machine. The sample images are smoother than
DIV2K's photographs once enlarged, which makes the lossless video a little cheaper to encode than on DIV2K.
"""
from __future__ import annotations
import argparse, concurrent.futures, json, multiprocessing, os, shutil, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tools.measure import LoadMonitor, cpu_seconds  # noqa: E402

from progressive_ir.core import (env_info, load_image, load_image8, resize_center_crop, run_ffmpeg,  # noqa: E402
                                 save_image, to_uint8_hwc, write_json)
from progressive_ir.progressions import (PREVIEW_PRESET, STRENGTHS, TASKS, ProgressionConfig,  # noqa: E402
                                         build_progression_dataset, make_progression)
from progressive_ir.sources import sample_images  # noqa: E402

PAPER_IMAGES, PAPER_TASKS, GOAL_MINUTES, DIV2K_SIZE = 800, ("resolution", "blur", "lowlight"), 15.0, (2040, 1356)
PAPER_VIDEOS = PAPER_IMAGES * len(PAPER_TASKS) * len(STRENGTHS)
SAMPLE_NAMES = ["astronaut", "coffee", "motorcycle", "chelsea", "rocket", "hubble"]
PROFILE = ("01_progression_data", "paper")  # the experiment and profile whose data settings are measured
BUILD_KEYS = ("frames", "size", "fps", "seed", "level_schedule", "degradations", "frame_format", "preview",
              "preview_scale", "prompt_types", "workers", "threads")  # what decides a video's cost
UTVIDEO = ("-c:v", "utvideo", "-pix_fmt", "gbrp")  # the lossless codec before HuffYUV, for comparison
HUFFYUV_CLI = ("-c:v", "huffyuv", "-pix_fmt", "rgb24", "-pred", "plane")  # the codec as built, out of process
QUICK = dict(images=1, repeats=1, phase_images=1, tasks=["blur"])  # --quick: a minute on a busy machine


def _import_builder():
    "What a build worker imports once: the builder, and PyAV (the lossless writer, imported at its first video)."
    import av  # noqa: F401
    import progressive_ir.progressions  # noqa: F401


def worker_startup(workers):
    "Wall and CPU seconds to start `workers` spawned processes that import the builder (paid once per build)."
    c0, t = cpu_seconds(), time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_import_builder) as pool:
        for f in [pool.submit(os.getpid) for _ in range(workers)]:  # each submission starts a process
            f.result()
    return dict(workers=workers, seconds=round(time.perf_counter() - t, 2), cpu_seconds=round(cpu_seconds() - c0, 2))


def profile_settings(a) -> dict:
    "The build settings of the paper profile's `data` section, with those the command line gives over them."
    from progressive_ir.cli import load_profile
    data = load_profile(*PROFILE)["data"]
    S = {k: ProgressionConfig.from_params(data).__dict__[k] for k in BUILD_KEYS}
    given = dict(size=a.size and [int(v) for v in a.size.lower().split("x")], frames=a.frames,
                 workers=a.workers, threads=a.threads, frame_format=a.frame_format,
                 preview=None if a.preview is None else a.preview == "yes")
    S.update({k: v for k, v in given.items() if v is not None})
    S["threads"] = S["threads"] or max(1, (os.cpu_count() or 1) // S["workers"])  # as the builder resolves it
    S["size"] = list(S["size"])
    return S


def timed_build(out, sources, tasks, S, workers):
    "Build `sources` x `tasks` x both strengths into `out` with settings `S`; return (videos, wall s, CPU s)."
    c0, t = cpu_seconds(), time.perf_counter()
    build_progression_dataset(out, sources, tasks=tasks, strengths=STRENGTHS, split="train",
                              **dict(S, workers=workers, threads=1 if workers == 1 else S["threads"]))
    sec, cpu = time.perf_counter() - t, cpu_seconds() - c0
    summary = json.loads((Path(out) / "summary.json").read_text())
    if summary["failed"]:
        raise RuntimeError(f"benchmark build failed on {summary['failures']}")
    return summary["built"], sec, cpu


def per_video(n, sec, cpu, startup, workers):
    "Speed figures for `n` videos built in `sec` wall / `cpu` CPU seconds, with and without the workers' start-up."
    s = sec - (startup["seconds"] if workers > 1 else 0)
    c = cpu - (startup["cpu_seconds"] if workers > 1 else 0)
    return dict(videos=n, seconds=round(sec, 2), videos_per_s=round(n / s, 4), seconds_per_video=round(s / n, 3),
                cpu_seconds_per_video=round(c / n, 3), seconds_per_video_with_startup=round(sec / n, 3))


def div2k_like_folder(folder, imgs):
    "Write each sample image and its mirror image at DIV2K's size as PNGs into `folder`."
    folder.mkdir()
    for name, img in imgs.items():
        big = resize_center_crop(img, DIV2K_SIZE)
        save_image(big, folder / f"{name}.png")
        save_image(big.flip(-1), folder / f"{name}_mirrored.png")
    return folder


def measure_per_task(tmp, imgs, tasks, S):
    "Measurement 1: one single-process build per task."
    out = {}
    for task in tasks:
        with LoadMonitor() as load:
            n, sec, cpu = timed_build(tmp / task, imgs, (task,), S, 1)
        out[task] = dict(per_video(n, sec, cpu, dict(seconds=0, cpu_seconds=0), 1), machine_load=load.record)
        r = out[task]
        print(f"{task:>10}: {n} videos in {sec:.1f} s ({r['seconds_per_video']:.2f} s/video; "
              f"{r['cpu_seconds_per_video']:.2f} CPU-s/video)", flush=True)
    return out


def measure_paper_set(tmp, folder, images, repeats, S):
    "Measurement 2: `repeats` multi-process builds of the paper's tasks, each scaled to the paper's 800 images."
    runs, workers = [], S["workers"]
    for k in range(repeats):
        with LoadMonitor() as load:
            startup = worker_startup(workers) if workers > 1 else dict(workers=1, seconds=0.0, cpu_seconds=0.0)
            n, sec, cpu = timed_build(tmp / f"paper{k}", folder, PAPER_TASKS, S, workers)
        r = per_video(n, sec, cpu, startup, workers)
        scale = PAPER_IMAGES / images
        minutes = (startup["seconds"] + r["seconds_per_video"] * n * scale) / 60
        cpu_minutes = r["cpu_seconds_per_video"] * n * scale / 60 / os.cpu_count()
        runs.append(dict(r, worker_startup=startup, minutes=round(minutes, 1),
                         minutes_from_cpu_seconds_all_cores_busy=round(cpu_minutes, 1), machine_load=load.record))
        print(f"paper set run {k + 1}/{repeats}: {n} videos in {sec:.1f} s "
              f"({r['cpu_seconds_per_video']:.2f} CPU-s/video): {minutes:.1f} min for the paper's set "
              f"(other processes: {load.record['other_processes_cores_mean']} cores)", flush=True)
        shutil.rmtree(tmp / f"paper{k}", ignore_errors=True)
    minutes = [r["minutes"] for r in runs]
    median = statistics.median(minutes)
    return dict(measured=dict(images=images, image_size=list(DIV2K_SIZE), tasks=list(PAPER_TASKS)), runs=runs,
                images=PAPER_IMAGES, videos=PAPER_IMAGES * len(PAPER_TASKS) * len(STRENGTHS),
                minutes_median=median, minutes_min=min(minutes), minutes_max=max(minutes),
                cpu_seconds_per_video_median=statistics.median(r["cpu_seconds_per_video"] for r in runs),
                goal_minutes=GOAL_MINUTES, goal_met=median <= GOAL_MINUTES)


def _phase(acc, name, fn):
    "Run `fn`, adding its CPU seconds (this process, children) to `acc[name]`; return its result."
    c0 = cpu_seconds()
    out = fn()
    acc[name] = acc.get(name, 0.0) + cpu_seconds() - c0
    return out


def _ffmpeg_lossless(arr, path, fps, codec):
    "Encode `uint8` frames `arr` losslessly with the ffmpeg program and `codec` (ffmpeg's output options)."
    T, H, W, _ = arr.shape
    run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", f"{fps:g}", "-i", "-", *codec,
                "-threads", "1", "-fflags", "+bitexact", str(path)], path, stdin=memoryview(arr).cast("B"))


def _encoding_steps(S) -> list:
    "The phases that store a video's files as the settings `S` build them."
    if S["frame_format"] == "png":
        return ["PNG frames (frame_format='png')", *(["preview alone"] if S["preview"] else [])]
    return ["lossless + preview (as built with a preview)" if S["preview"] else "lossless video alone"]


def _video_phases(acc, P, arr, d, S, task):
    "Time the encodings of one video (as built, and the others for comparison), its prompts and checksum."
    fps, scale = S["fps"], S["preview_scale"]
    _phase(acc, "lossless video alone", lambda: P.write_sample_videos(arr, d / P.FRAMES_VIDEO, None, fps=fps))
    _phase(acc, "lossless video, HuffYUV by the ffmpeg program", lambda: _ffmpeg_lossless(
        arr, d / "huffyuv.mkv", fps, HUFFYUV_CLI))
    _phase(acc, "lossless video, Ut Video by the ffmpeg program (the format before)", lambda: _ffmpeg_lossless(
        arr, d / "ut.mkv", fps, UTVIDEO))
    _phase(acc, "preview alone", lambda: P.write_sample_videos(
        arr, None, d / "preview.mp4", fps=fps, preview_scale=scale))
    _phase(acc, "lossless + preview (as built with a preview)", lambda: P.write_sample_videos(
        arr, d / "both.avi", d / "both.mp4", fps=fps, preview_scale=scale))
    _phase(acc, "PNG frames (frame_format='png')", lambda: [
        P.save_png(f, d / f"frame_{t:02d}.png") for t, f in enumerate(arr)])
    _phase(acc, "prompts", lambda: P._sample_prompts(arr[0], task, S["prompt_types"]))
    files = [d / P.FRAMES_VIDEO] + ([d / "preview.mp4"] if S["preview"] else [])
    _phase(acc, "SHA-256", lambda: P.files_sha256(files))


def measure_phases(tmp, folder, names, S):
    "Measurement 3: CPU seconds per video of each step of writing a sample (the builder's own functions)."
    from progressive_ir import progressions as P
    degradations = ProgressionConfig(degradations=S["degradations"]).resolved_degradations()
    acc, videos, per_task = {}, 0, {t: 0 for t in PAPER_TASKS}
    for name in names:
        png = folder / f"{name}.png"
        _phase(acc, "load PNG as float, then rounded (before)", lambda: to_uint8_hwc(load_image(png)))
        img = _phase(acc, "load PNG", lambda: load_image8(png))
        target = _phase(acc, "resize (clean_target8)", lambda: P.clean_target8(img, S["size"]))
        for task in PAPER_TASKS:
            for strength in STRENGTHS:
                d = tmp / f"phases-{name}-{task}-{strength}"
                d.mkdir()
                seed = P.video_seed(S["seed"], name, task, strength)
                arr, _ = _phase(acc, f"degrade {task}", lambda: P._progression_uint8(
                    target, task, strength, S["frames"], seed, S["level_schedule"], degradations[task]))
                _phase(acc, "PSNR records", lambda: P._psnr_to_clean_uint8(arr))
                _video_phases(acc, P, arr, d, S, task)
                shutil.rmtree(d)
                videos += 1
                per_task[task] += 1
    built = ("load PNG", "resize (clean_target8)", "PSNR records", *_encoding_steps(S), "prompts", "SHA-256",
             *(f"degrade {t}" for t in PAPER_TASKS))
    phases = {}
    for k, v in acc.items():
        task = k.split()[-1] if k.startswith("degrade") else None
        phases[k] = dict(cpu_seconds_per_video=round(v / videos, 4), **(
            {"cpu_seconds_per_video_of_this_task": round(v / per_task[task], 4)} if task else {}))
    total = sum(acc[k] for k in built) / videos
    return dict(videos=videos, images=list(names), phases=phases,
                cpu_seconds_per_video_of_the_built_steps=round(total, 4), built_steps=list(built),
                minutes_for_the_paper_set_on_2_cores=round(total * PAPER_VIDEOS / 2 / 60, 1),
                note="the steps not in built_steps are for comparison (the float load and Ut Video through "
                     "the ffmpeg program: what the builder did before; HuffYUV through the program: the same "
                     "codec out of process; the preview and PNG frames: other settings); the projection is the "
                     "built steps' CPU time x 4800 videos / 2 cores, without the build's bookkeeping (manifest, "
                     "fingerprints, process start-up), which the paper-set runs include")


def summary(paper, phases) -> dict:
    "The headline figures as one flat table (what the results page shows)."
    out = {}
    if paper:
        out.update({f"paper set, {k.replace('_', ' ')}": paper[k] for k in (
            "minutes_median", "minutes_min", "minutes_max", "cpu_seconds_per_video_median", "goal_minutes",
            "goal_met")})
        out["paper set, runs (minutes)"] = ", ".join(str(r["minutes"]) for r in paper["runs"])
        out["paper set, other processes (cores, mean per run)"] = ", ".join(
            str(r["machine_load"]["other_processes_cores_mean"]) for r in paper["runs"])
    if phases:
        out.update({f"CPU-s per video: {k}": v["cpu_seconds_per_video"] for k, v in phases["phases"].items()})
        out["phases, CPU-s per video of the built steps"] = phases["cpu_seconds_per_video_of_the_built_steps"]
        out["phases, minutes for the paper set on 2 cores"] = phases["minutes_for_the_paper_set_on_2_cores"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"a short check: {QUICK}")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--images", type=int, default=6, help="sample images (x 2 strengths = videos per task)")
    ap.add_argument("--repeats", type=int, default=3, help="paper-set runs (median and spread reported)")
    ap.add_argument("--size", help="WxH of the videos (default: the paper profile's)")
    ap.add_argument("--frames", type=int, help="frames per video (default: the paper profile's)")
    ap.add_argument("--workers", type=int, help="build processes of the paper set (default: the profile's)")
    ap.add_argument("--threads", type=int, help="torch threads per worker (default: the profile's)")
    ap.add_argument("--frame-format", choices=["video", "png"], help="default: the paper profile's")
    ap.add_argument("--preview", choices=["yes", "no"], help="an mp4 preview per video (default: the profile's)")
    ap.add_argument("--phase-images", type=int, default=2, help="DIV2K-sized images of the phase profile")
    ap.add_argument("--no-per-task", action="store_true", help="skip the per-task measurement")
    ap.add_argument("--no-paper-set", action="store_true", help="skip the paper-set measurement")
    ap.add_argument("--no-phases", action="store_true", help="skip the phase profile")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "progression_speed_cpu.json"))
    a = ap.parse_args(argv)
    if a.quick:  # a setting given on the command line wins over the quick one
        for key, value in QUICK.items():
            if getattr(a, key) == ap.get_default(key):
                setattr(a, key, value)
    S = profile_settings(a)
    names = SAMPLE_NAMES[:a.images]
    imgs = sample_images(names)
    tmp = Path(tempfile.mkdtemp(prefix="progression_speed_"))
    torch.set_num_threads(1)  # the measurements in this process: one torch thread, as each worker has
    make_progression(imgs[names[0]], "blur", "mild", frames=3, size=(272, 160))  # warm-up: imports, page cache
    per_task, paper, phases = {}, None, None
    try:
        folder = div2k_like_folder(tmp / "div2k_like", imgs)
        if not a.no_per_task:
            per_task = measure_per_task(tmp, imgs, a.tasks, S)
        if not a.no_paper_set:
            paper = measure_paper_set(tmp, folder, 2 * len(names), a.repeats, S)
            print(f"paper set: median {paper['minutes_median']} min (runs {[r['minutes'] for r in paper['runs']]}; "
                  f"goal <= {GOAL_MINUTES:g} min: {'met' if paper['goal_met'] else 'NOT met'})", flush=True)
        if not a.no_phases:
            phases = measure_phases(tmp, folder, names[:a.phase_images], S)
            print(f"phases: {phases['cpu_seconds_per_video_of_the_built_steps']} CPU-s/video in the built steps "
                  f"({phases['minutes_for_the_paper_set_on_2_cores']} min for the paper set on 2 cores)",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from progressive_ir.progressions import FRAMES_VIDEO, LOSSLESS_CODEC
    result = dict(benchmark="progression_speed", command=" ".join([Path(sys.executable).name, *sys.argv]),
                  settings=dict(quick=a.quick, profile="/".join(PROFILE), build=S, tasks=a.tasks, images=names,
                                strengths=list(STRENGTHS), paper_tasks=list(PAPER_TASKS), per_task_workers=1,
                                per_task_threads=1, paper_set_repeats=a.repeats,
                                scene_prompt_source="offline-heuristic", preview_preset=PREVIEW_PRESET,
                                lossless_video=dict(file=FRAMES_VIDEO, codec=LOSSLESS_CODEC[0],
                                                    pixels=LOSSLESS_CODEC[1], options=LOSSLESS_CODEC[2],
                                                    writer="PyAV, in process")),
                  summary=summary(paper, phases), per_task=per_task, paper_set=paper, phases=phases,
                  env=env_info())
    write_json(result, a.out)
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
