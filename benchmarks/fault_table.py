"""Kill -9 fault table (issue 12): `phantom`, `preprocess --workers 2` and `predict --input`, each killed at
three moments, then rerun; and two `preprocess` runs at once on one cache.

    PYTHONPATH=src python benchmarks/fault_table.py [--work DIR] [--cases 6] [--json OUT.json]

Each command first runs uninterrupted (the reference). Then, for each moment, a fresh run is started in its
own process group, the whole group is killed with SIGKILL when the moment is reached (watched on disk), and
the same command is run again. Checked after the rerun:
- completes: exit status 0;
- equal: every output equals the reference (NIfTI payloads decompressed, JSON parsed, other files bytewise);
- only unfinished redone: no file of a case that was finished at the kill is rewritten (inode and mtime);
- no temp files: no hidden temporary entry is left anywhere under the output (the lock file included).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
HIDDEN_OK: set[str] = set()  # hidden names that may stay after a completed run (none)
MARKERS = {".phantom.json", ".phantom-done", ".lock"}  # restart records and the lock: not temporary files


def mpliver(*args: str) -> list[str]:
    return [PY, "-m", "mpliver", *map(str, args)]


def run(cmd: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_when(proc: subprocess.Popen, moment: Callable[[], bool], limit: float = 600,
              group: bool = True) -> bool:
    """SIGKILL the process group of `proc` (or, `group=False`, the main process only, orphaning its workers)
    as soon as `moment()` holds; False if it ended first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if moment():
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.003)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


# ---- comparing outputs -------------------------------------------------------------------------------------


def content(path: Path):
    if path.name.endswith(".gz"):
        with gzip.open(path) as f:
            return f.read()
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return path.read_bytes()


def visible_files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def differences(ref: Path, got: Path) -> list[str]:
    """Files that are missing on one side or differ; a differing NIfTI with its largest voxel difference."""
    a, b = visible_files(ref), visible_files(got)
    diff = sorted(set(a) ^ set(b))
    for k in sorted(set(a) & set(b)):
        if content(a[k]) != content(b[k]):
            nifti = k.endswith(".nii.gz")
            diff.append(f"{k} (max |diff| {nifti_difference(a[k], b[k]):.2g})" if nifti else k)
    return diff


def nifti_difference(a: Path, b: Path) -> float:
    import nibabel as nib
    import numpy as np

    x, y = (np.asarray(nib.load(str(p)).dataobj, dtype=np.float64) for p in (a, b))
    return float(np.abs(x - y).max()) if x.shape == y.shape else float("inf")


def hidden_entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name not in HIDDEN_OK)


def stamps(files: list[Path]) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files if p.exists()}


# ---- the three commands ------------------------------------------------------------------------------------


class Phantom:
    name = "phantom --cases N"

    def __init__(self, work: Path, cases: int):
        self.work, self.cases = work, cases

    def command(self, out: Path) -> list[str]:
        return mpliver("phantom", out, "--cases", self.cases, "--seed", 0, "--workers", 2)

    def case_files(self, out: Path, cid: str) -> list[Path]:
        return [out / "imagesTr" / f"{cid}_0000.nii.gz", out / "imagesTr" / f"{cid}_0001.nii.gz",
                out / "labelsTr" / f"{cid}.nii.gz", out / "labelsTr_phases" / f"{cid}_0001.nii.gz",
                out / "previews" / f"{cid}.png"]

    def finished(self, out: Path) -> list[str]:
        ids = [f"PHANTOM_{i:04d}" for i in range(self.cases)]
        return [c for c in ids if all(p.exists() for p in self.case_files(out, c))]

    def moments(self, out: Path) -> dict[str, Callable[[], bool]]:
        return {"first case being written": lambda: any((out / "imagesTr").glob(".*"))
                or any((out / "imagesTr").glob("*.nii.gz")),
                "half the cases done": lambda: len(self.finished(out)) >= self.cases // 2,
                "all but one case done": lambda: len(self.finished(out)) >= self.cases - 1}


class Preprocess(Phantom):
    name = "preprocess --workers 2"

    def __init__(self, work: Path, cases: int, dataset: Path):
        super().__init__(work, cases)
        self.dataset = dataset

    def command(self, out: Path) -> list[str]:
        return mpliver("preprocess", self.dataset, "--out", out, "--workers", 2)

    def case_files(self, out: Path, cid: str) -> list[Path]:
        folder = out / "cases" / cid
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def finished(self, out: Path) -> list[str]:
        try:
            return sorted(json.loads((out / "manifest.json").read_text()).get("cases", {}))
        except (OSError, ValueError):
            return []

    def moments(self, out: Path) -> dict[str, Callable[[], bool]]:
        return {"first case being written": lambda: any((out / "cases").glob(".*")),
                "2 cases recorded": lambda: len(self.finished(out)) >= 2,
                "4 cases recorded": lambda: len(self.finished(out)) >= 4}


class PredictInput(Phantom):
    name = "predict --input"

    def __init__(self, work: Path, cases: int, dataset: Path, bundle: Path):
        super().__init__(work, cases)
        self.dataset, self.bundle = dataset, bundle

    def command(self, out: Path) -> list[str]:
        return mpliver("predict", "--model", self.bundle, "--input", self.dataset, "--liver-mask",
                       self.dataset / "labelsTr", "--out", out, "--device", "cpu")

    def case_files(self, out: Path, cid: str) -> list[Path]:
        endings = (".nii.gz", "_uncertainty.nii.gz", "_lesions.csv", "_lesions.json")
        return [out / f"{cid}{s}" for s in endings]

    def finished(self, out: Path) -> list[str]:
        return sorted(p.name[: -len(".nii.gz")] for p in out.glob("PHANTOM_????.nii.gz"))

    def moments(self, out: Path) -> dict[str, Callable[[], bool]]:
        return {"first case being written": lambda: any(out.glob(".PHANTOM_*")),
                "2 cases done": lambda: len(self.finished(out)) >= 2,
                "4 cases done": lambda: len(self.finished(out)) >= 4}


def tiny_bundle(path: Path) -> Path:
    """An untrained width-0.25 bundle at 64 px without a liver model (masks come from --liver-mask)."""
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from mpliver.data.config import PreprocessConfig
    from mpliver.inference.bundle import save_bundle
    from mpliver.models import create_model

    torch.manual_seed(0)
    model = create_model("paper", width=0.25, blocks=(1, 1, 1, 1)).eval()
    pre = PreprocessConfig(input_size=64, crop=True, registration="liver", liver_mask_source="file",
                           liver_mask_pattern="(given to predict)")
    return save_bundle(path, model, ["PV", "ART"], pre, {"synthetic": True}, None)


# ---- the table ---------------------------------------------------------------------------------------------


def kill_and_rerun(cmd: Phantom, reference: Path, moment: str, out: Path, group: bool = True) -> dict:
    proc = start(cmd.command(out))
    killed = kill_when(proc, cmd.moments(out)[moment], group=group)
    deadline = time.monotonic() + 30
    while not group and time.monotonic() < deadline and group_alive(proc.pid):
        time.sleep(0.1)  # orphaned workers must end by themselves
    orphans_left = not group and group_alive(proc.pid)
    if orphans_left:
        os.killpg(proc.pid, signal.SIGKILL)
    done_at_kill = cmd.finished(out) if out.exists() else []
    left = [e for e in hidden_entries(out) if Path(e).name not in MARKERS] if out.exists() else []
    before = stamps([p for c in done_at_kill for p in cmd.case_files(out, c)])
    t0 = time.monotonic()
    again = run(cmd.command(out))
    seconds = time.monotonic() - t0
    after = stamps([p for c in done_at_kill for p in cmd.case_files(out, c)])
    rewritten = sorted({Path(k).name for k in before if after.get(k) != before[k]})
    diff = differences(reference, out) if again.returncode == 0 else ["(rerun failed)"]
    return {
        "command": cmd.name + ("" if group else " (main process only)"), "moment": moment, "killed": killed,
        "orphans_alive_after_30s": orphans_left, "finished_at_kill": len(done_at_kill),
        "temp_left_by_kill": left, "rerun_rc": again.returncode,
        "rerun_error": again.stderr.strip().splitlines()[-1:] if again.returncode else [],
        "rerun_s": round(seconds, 1), "equal": not diff, "differences": diff[:5],
        "finished_files_rewritten": rewritten, "temp_after_rerun": hidden_entries(out),
    }


def concurrent_preprocess(cmd: Preprocess, reference: Path, out: Path, wait: bool) -> dict:
    """Start two identical runs on one fresh cache at the same moment; the one that takes the lock second
    must refuse in one line (or, with --wait, wait and then reuse every case)."""
    extra = ["--wait"] if wait else []
    runs = [subprocess.Popen(cmd.command(out) + extra, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(*p.communicate(),) for p in runs]
    results = [(p.returncode, o, e) for p, (o, e) in zip(runs, results, strict=True)]
    says = [(err.strip().splitlines() or [""])[-1] for _, _, err in results]
    outs = [(o.strip().splitlines() or [""])[-1] for _, o, _ in results]
    return {
        "command": "2 x preprocess at once" + (" (both --wait)" if wait else ""),
        "rc": [r for r, _, _ in results], "stderr_last": says, "stdout_last": outs,
        "equal": not differences(reference, out), "temp_after": hidden_entries(out),
    }


def markdown(rows: list[dict], pairs: list[dict]) -> str:
    lines = ["| command | kill -9 when | cases done at kill | temp files left by the kill | rerun completes "
             "| equals uninterrupted | finished cases redone | temp files after rerun |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rewritten = r["finished_files_rewritten"]
        redone = f"{len(rewritten)} files" if rewritten else "none"
        completes = "yes" if r["rerun_rc"] == 0 else "NO: " + " ".join(r["rerun_error"])
        orphans = r.get("orphans_alive_after_30s")
        moment = r["moment"] + ("" if r["killed"] else " (ended first)") + \
            ("" if "main process only" not in r["command"] else
             "; workers " + ("STILL ALIVE after 30 s" if orphans else "ended by themselves"))
        lines.append(f"| {r['command']} | {moment} | "
                     f"{r['finished_at_kill']} | {len(r['temp_left_by_kill']) or 'none'} | "
                     f"{completes} ({r['rerun_s']} s) | "
                     f"{'yes' if r['equal'] else 'NO: ' + ', '.join(r['differences'])} | {redone} | "
                     f"{len(r['temp_after_rerun']) or 'none'} |")
    lines += ["", "| two runs on one cache | exit codes | the refused / waiting run says | cache equals "
              "uninterrupted | temp files after |", "|---|---|---|---|---|"]
    for p in pairs:
        lines_out = p["stderr_last"] + p["stdout_last"]
        said = " / ".join(x[:150] for x in lines_out if x.startswith(("error", "0 ")))
        lines.append(f"| {p['command']} | {p['rc']} | {said} | {'yes' if p['equal'] else 'NO'} | "
                     f"{len(p['temp_after']) or 'none'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mpliver_fault_table"))
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", default="phantom,preprocess,predict,concurrent")
    ap.add_argument("--render", type=Path, default=None, help="Print the tables of an earlier --json file.")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        print(markdown(saved["rows"], saved["concurrent"]))
        return
    work, only = args.work, args.only.split(",")
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    phantom = Phantom(work, args.cases)
    ref_ds = work / "ref_phantom"
    done = run(phantom.command(ref_ds))
    assert done.returncode == 0, done.stderr
    commands: list[tuple[str, Phantom, Path]] = [("phantom", phantom, ref_ds)]
    pre = Preprocess(work, args.cases, ref_ds)
    ref_cache = work / "ref_cache"
    if {"preprocess", "concurrent"} & set(only):
        assert run(pre.command(ref_cache)).returncode == 0
        commands.append(("preprocess", pre, ref_cache))
    if "predict" in only:
        bundle = tiny_bundle(work / "tiny.mpliver")
        pred = PredictInput(work, args.cases, ref_ds, bundle)
        ref_pred = work / "ref_predict"
        assert run(pred.command(ref_pred)).returncode == 0
        commands.append(("predict", pred, ref_pred))
    rows = []
    for key, cmd, reference in commands:
        if key not in only:
            continue
        for i, moment in enumerate(cmd.moments(work / "x")):
            row = kill_and_rerun(cmd, reference, moment, work / f"{key}_kill{i}")
            print(json.dumps(row), flush=True)
            rows.append(row)
        if key in ("phantom", "preprocess"):  # worker processes: kill the main one only, mid-run
            moment = list(cmd.moments(work / "x"))[1]
            row = kill_and_rerun(cmd, reference, moment, work / f"{key}_killmain", group=False)
            print(json.dumps(row), flush=True)
            rows.append(row)
    pairs = []
    if "concurrent" in only:
        for wait in (False, True):
            pairs.append(concurrent_preprocess(pre, ref_cache, work / f"concurrent_{int(wait)}", wait))
            print(json.dumps(pairs[-1]), flush=True)
    table = markdown(rows, pairs)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "concurrent": pairs}, indent=1))


if __name__ == "__main__":
    main()
