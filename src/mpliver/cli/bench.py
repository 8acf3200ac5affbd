"""`mpliver bench`: training/inference throughput and peak memory of paper, add, single_phase and nnunet2d;
with `--peer nnunet`, `mpliver predict` against nnU-Net v2's own predictor on one 512x512x100 study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mpliver.errors import ConfigError
from mpliver.extras import require_nnunet

GPU_DEFAULTS = {"size": 512, "batch": 16, "width": 1.0, "dtype": "bf16"}
CPU_DEFAULTS = {"size": 128, "batch": 4, "width": 0.25, "dtype": "fp32"}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    """The ratio table (ratios to `add`, measured in the same rounds)."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from rich.console import Console
    from rich.table import Table

    cfg = result["config"]
    flags = (f"{result['device_name']} ({result['device']}), {cfg['size']}x{cfg['size']}, "
             f"batch {cfg['batch']}, width {cfg['width']}, {cfg['dtype']}, compile={cfg['compile']}"
             f"{'' if cfg.get('compile_mode', 'default') == 'default' else '/' + cfg['compile_mode']}, "
             f"fused_sam={cfg.get('fused_sam', False)}, fold_bn={cfg.get('fold_bn', False)}, "
             f"channels_last={cfg['channels_last']}, {cfg['iters']} rounds")
    table = Table(title=f"mpliver bench: {flags}")
    for col in ("model", "params (M)", "train slices/s", "train / add", "infer slices/s", "infer / add",
                "train peak MiB", "infer peak MiB"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in result["results"]:
        table.add_row(r["model"], f"{r['params'] / 1e6:.2f}", _fmt(r["train_slices_per_s"], ".2f"),
                      _fmt(r["train_ratio"], ".2f"), _fmt(r["infer_slices_per_s"], ".2f"),
                      _fmt(r["infer_ratio"], ".2f"), _fmt(r["train_peak_mib"], ".0f"),
                      _fmt(r["infer_peak_mib"], ".0f"))
    console = Console(width=160)
    console.print(table)
    console.print(f"memory: {result['memory_method']}; slices/s: medians over rounds; ratio: median of the "
                  "per-round paired ratios, > 1 is faster than add")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        models: str = typer.Option(None, help="Comma-separated model names (default: paper, add, "
                                   "single_phase, nnunet2d_native; nnunet2d without the nnU-Net extra)."),
        size: int = typer.Option(None, help="Slice size in px (default: 512 on a GPU, 128 on the CPU)."),
        batch: int = typer.Option(None, help="Slices per step (default: 16 on a GPU, 4 on the CPU)."),
        width: float = typer.Option(None, help="Channel width (default: 1 on a GPU, 0.25 on the CPU)."),
        dtype: str = typer.Option(None, help="bf16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or gpu (= cuda)."),
        compile: bool = typer.Option(False, "--compile", help="torch.compile every model (inductor)."),
        compile_mode: str = typer.Option("default", help="torch.compile mode: default, reduce-overhead (CUDA "
                                         "graphs), max-autotune, max-autotune-no-cudagraphs."),
        fused_sam: bool = typer.Option(False, "--fused-sam", help="Eager models with SAM's elementwise work "
                                       "compiled into fused kernels (regional torch.compile)."),
        fold_bn: bool = typer.Option(False, "--fold-bn", help="Inference on the copy that predict runs "
                                     "(conv -> BN folded; channels_last with --channels-last)."),
        channels_last: bool = typer.Option(False, "--channels-last", help="channels_last memory format."),
        iters: int = typer.Option(5, help="Timed rounds (medians are reported)."),
        warmup: int = typer.Option(2, help="Untimed warm-up rounds (compilation happens here)."),
        train: bool = typer.Option(True, "--train/--no-train", help="Measure training steps."),
        infer: bool = typer.Option(True, "--infer/--no-infer", help="Measure inference passes."),
        memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory."),
        threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
        out: Path = typer.Option(Path("bench.json"), help="Where to write the JSON result."),
        peer: str = typer.Option(None, "--peer", help="nnunet: time `mpliver predict` and nnU-Net v2's "
                                 "predictor (TTA on and off) on the same 512x512x100 study (needs "
                                 "mpliver[nnunet])."),
        preset: str = typer.Option("default", help="--peer: the preset of mpliver's (untrained) model."),
        work: Path = typer.Option(Path("/tmp/mpliver_peer_bench"), help="--peer: work folder (the study "
                                  "is written once and kept)."),
    ) -> None:
        """Throughput (slices/s) and peak memory, all models in one run; ratios to `add` in a table."""
        if peer is not None:
            return _peer_bench(peer, preset, work, threads, out)
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        import torch

        from mpliver.apps.bench import DEFAULT_MODELS, BenchConfig, run_bench, write_json
        from mpliver.runtime import resolve_device

        if threads > 0:
            torch.set_num_threads(threads)
        dev = resolve_device(device, what="bench: --device")
        defaults = GPU_DEFAULTS if dev.type == "cuda" else CPU_DEFAULTS
        given = {"size": size, "batch": batch, "width": width, "dtype": dtype}
        chosen = {k: defaults[k] if v is None else v for k, v in given.items()}
        names = tuple(m.strip() for m in models.split(",") if m.strip()) if models else DEFAULT_MODELS
        cfg = BenchConfig(models=names, device=str(dev),
                          compile=compile, compile_mode=compile_mode, fused_sam=fused_sam, fold_bn=fold_bn,
                          channels_last=channels_last, iters=iters, warmup=warmup,
                          train=train, infer=infer, memory=memory, **chosen)
        # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("bench") as status:
            result = run_bench(cfg, progress=lambda msg: status.update(f"bench: {msg}"))
        print_table(result)
        typer.echo(f"wrote {write_json(result, out)}")


def _peer_bench(peer: str, preset: str, work: Path, threads: int, out: Path) -> None:
    """`--peer nnunet`: both predictors on the same study in one run; prints seconds and ratios."""
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from rich.console import Console


    if peer != "nnunet":
        raise ConfigError(f"--peer must be 'nnunet', got '{peer}'")
    require_nnunet("mpliver bench --peer nnunet")
    # lazy: keeps `mpliver --help` fast (the command's modules load when it runs)
    from mpliver.apps.nnunet_bench import run_peer_bench
    from mpliver.io.atomic import write_json_atomic

    console = Console(stderr=True)
    result = run_peer_bench(work, preset, threads or 2,
                            on_event=lambda msg: console.print(msg, markup=False, highlight=False))
    nn = result["nnunet"]
    typer.echo(f"study 512x512x100, CPU, {result['threads']} threads")
    typer.echo(f"mpliver predict ({preset}): {result['mpliver']['total_s']:.1f} s "
               f"(network on {result['mpliver']['network_slices']} liver slices)")
    typer.echo(f"nnU-Net v2 predictor, 2d plan (patch {nn['patch_size']}, {len(nn['features_per_stage'])} "
               f"stages): TTA on {nn['seconds']['tta']:.1f} s, TTA off {nn['seconds']['no_tta']:.1f} s")
    typer.echo(f"ratio nnU-Net / mpliver: {result['ratio_nnunet_tta_to_mpliver']:.2f} (TTA on, nnU-Net's "
               f"default), {result['ratio_nnunet_no_tta_to_mpliver']:.2f} (TTA off)")
    write_json_atomic(out, result)
    typer.echo(f"wrote {out}")
