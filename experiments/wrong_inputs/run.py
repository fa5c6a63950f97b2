"""Wrong inputs a new user types, each run as the command line runs it: the error it gives, how
long until it appears, and whether any training had started.

    python experiments/wrong_inputs/run.py [--out experiments/wrong_inputs] [--timeout 120] [--only 3 7 ...]

First trains a smoke checkpoint (debug=smoke, seconds) for the sample / evaluate / edit cases
and prepares the files some cases need (a corrupt checkpoint, a folder of undecodable images, an
empty data folder); then runs every case in CASES as its own process from a scratch folder and
writes results.md (the table of docs/wrong_inputs.md) and results.json to --out. The time is the
whole command's wall time (Python start and imports included) until it exits with the error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (entry point, arguments, what is wrong). {ckpt} is the smoke checkpoint, {tmp} the scratch folder.
CASES = [
    ("train", "schedule.num_timesteps=0", "no diffusion steps"),
    ("train", "data.batch_size=0", "empty batches"),
    ("train", "data.batch_size=1.5", "a float for an integer"),
    ("train", "model.prediction=noise", "an option that does not exist"),
    ("train", "model.num_classes=two", "a word for a number"),
    ("train", "trainer.max_epochs=abc", "a word for a number (Lightning's option)"),
    ("train", "+trainer.max_epoch=3", "a misspelt Lightning option"),
    ("train", "trainer.devices=0", "no devices"),
    ("train", "trainer.accelerator=gpu", "a GPU on a machine without one"),
    ("train", "trainer.precision=fp8", "a precision Lightning does not have"),
    ("train", "optimizer.lr=-1", "a negative learning rate"),
    ("train", "optimizer.betas=[0.9,1.5]", "an Adam beta above 1"),
    ("train", "lr_warmup_steps=-1", "negative warm-up"),
    ("train", "lr_decay=linear", "a decay that does not exist"),
    ("train", "seed=abc", "a word for the seed"),
    ("train", "float32_matmul_precision=low", "a matmul precision torch does not have"),
    ("train", "+foo=1", "a key no config has"),
    ("train", "sampler=ddim sampler.eta=2", "DDIM eta outside [0, 1] (first used by the first sample grid)"),
    ("train", "sampler.steps=0", "a sampler without steps"),
    ("train", "sampler=ddpm_fast sampler.spacing=log", "a spacing that does not exist"),
    ("train", "+sampler.etaa=0.5", "a misspelt sampler option"),
    ("train", "sampler=heunn", "a sampler that does not exist"),
    ("train", "model=huge", "a model preset that does not exist"),
    ("train", "sampler=null", "no sampler"),
    ("train", "model.guidance_scale=-1", "negative guidance"),
    ("train", "model.cond_drop_prob=1.5", "a label-drop probability above 1"),
    ("train", "callbacks.ema.decay=2", "an EMA decay above 1"),
    ("train", "data.image_size=7", "an image size the U-Net cannot halve"),
    ("train", "model.net.channel_mults=[1,0]", "a zero-width U-Net level"),
    ("train", "eval.num_samples=-1", "a negative number of final samples"),
    ("train", "eval.metrics=[fidd]", "a misspelt metric"),
    ("train", "eval.metrics=[fid] paths.data_dir={tmp}/empty", "FID without its feature network"),
    ("train", "callbacks.fid.every_n_epochs=1 paths.data_dir={tmp}/empty", "the FID callback without its network"),
    ("train", "ckpt_path={tmp}/nothing.ckpt", "resume from a missing checkpoint"),
    ("train", "ckpt_path={tmp}/corrupt.ckpt", "resume from a file that is not a checkpoint"),
    ("train", "data=mnist data.root={tmp}/nothing data.download=false", "MNIST not there (offline)"),
    ("train", "model.num_classes=10", "a class-conditional model on unlabelled triangles"),
    ("train", "data.val_fraction=0", "no validation images"),
    ("train", "data=folder", "an image folder without its path"),
    ("train", "data=folder data.path={tmp}/undecodable", "a folder of files that are not images"),
    ("sample", "ckpt={tmp}/nothing.ckpt", "a missing checkpoint"),
    ("sample", "ckpt={tmp}/corrupt.ckpt", "a file that is not a checkpoint"),
    ("sample", "ckpt={ckpt} num_samples=abc", "a word for the number of samples"),
    ("sample", "ckpt={ckpt} labels=3", "a class for an unconditional model"),
    ("sample", "ckpt={ckpt} save_tensors=samples.txt", "an unknown tensor file type"),
    ("evaluate", "ckpt={ckpt} metrics=fidd", "a misspelt metric"),
    ("evaluate", "ckpt={ckpt} split=tes", "a misspelt split"),
    ("evaluate", "ckpt={ckpt} sampler.steps=0", "the checkpoint's sampler with no steps"),
    ("edit", "ckpt={ckpt} task=nope", "a task that does not exist"),
    ("edit", "ckpt={ckpt} task=inpaint mask=diagonal", "a mask that is neither a side nor a file"),
]


def prepare(tmp: Path, python: str) -> Path:
    """The smoke checkpoint and the files the cases name."""
    (tmp / "empty").mkdir()
    (tmp / "corrupt.ckpt").write_bytes(b"this is not a checkpoint")
    undecodable = tmp / "undecodable"
    undecodable.mkdir()
    for index in range(4):
        (undecodable / f"image{index}.png").write_bytes(b"not a png")
    run = tmp / "smoke"
    subprocess.run(
        [python, "-m", "diffusion_lit.train", "model=tiny", "debug=smoke", "logger=[]", f"hydra.run.dir={run}"],
        check=True, capture_output=True, cwd=tmp,
    )  # fmt: skip
    return run / "checkpoints" / "last.ckpt"


def run_case(python: str, entry: str, arguments: list[str], cwd: Path, timeout: float) -> dict:
    started = time.perf_counter()
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    try:
        done = subprocess.run(
            [python, "-m", f"diffusion_lit.{entry}", *arguments], capture_output=True, text=True, cwd=cwd,
            timeout=timeout, env=env,
        )  # fmt: skip
        output, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, status = (expired.stdout or b"").decode() + (expired.stderr or b"").decode(), None
    seconds = time.perf_counter() - started
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "Error", "Could not", "In '"))]
    return {
        "seconds": round(seconds, 1),
        "exit_status": status,
        "message": (errors[0] if errors else (lines[-1] if lines else "")),
        "traceback": "Traceback" in output,
        "training_started": "Epoch 0" in output or (cwd / "run" / "checkpoints").exists(),
    }


def write_table(rows: list[dict], out: Path) -> None:
    lines = ["| # | command | what is wrong | exit | seconds | training started | message |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for number, row in enumerate(rows, 1):
        message = row["message"].replace("|", "\\|")
        if len(message) > 220:
            message = message[:217] + "..."
        lines.append(
            f"| {number} | `{row['entry']} {row['arguments']}` | {row['what']} | {row['exit_status']} | "
            f"{row['seconds']} | {'yes' if row['training_started'] else 'no'} | {message} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("experiments/wrong_inputs"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as not stopped")
    parser.add_argument("--only", type=int, nargs="*", help="case numbers (1-based) to run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        ckpt = prepare(tmp, sys.executable)
        for index, (entry, arguments, what) in enumerate(CASES):
            if args.only and index + 1 not in args.only:
                continue
            cwd = tmp / f"case{index:02d}"
            cwd.mkdir()
            filled = arguments.format(tmp=tmp, ckpt=ckpt)
            extra = [f"hydra.run.dir={cwd / 'run'}"] if entry == "train" else []
            row = run_case(sys.executable, entry, filled.split() + extra, cwd, args.timeout)
            rows.append({"entry": entry, "arguments": arguments, "what": what, **row})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
