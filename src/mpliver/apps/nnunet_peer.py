"""nnU-Net v2's own predictor on one study, timed in a child process of `mpliver bench --peer nnunet`.

    python -m mpliver.apps.nnunet_peer DATASET_ID OUT_JSON

The raw dataset (nnUNet_raw, set by the parent) holds the one study. nnU-Net's default ExperimentPlanner plans
it (the 2d configuration: patch, batch, network); the network of that plan is built with random weights (the
cost of a trained one) and run by nnUNetPredictor with nnU-Net's defaults (tile step 0.5, Gaussian weighting)
through `predict_from_files_sequential` (reading, pre-processing, sliding window, resampling back, writing),
once with mirroring TTA (nnU-Net's default) and once without. Writes the seconds and the plan to OUT_JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

CONFIGURATION = "2d"
MIRROR_AXES_2D = (0, 1)  # what nnUNetTrainer allows at inference for a 2d configuration


def time_predictor(dataset_id: int, out_dir: Path) -> dict:
    """Plan the study's dataset, then time nnUNetPredictor with and without mirroring TTA."""
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=False, clean=True)
    plan_experiments([dataset_id])
    name = convert_id_to_dataset_name(dataset_id)
    plans = load_json(str(Path(nnUNet_preprocessed) / name / "nnUNetPlans.json"))
    dataset_json = load_json(str(Path(nnUNet_raw) / name / "dataset.json"))
    manager = PlansManager(plans)
    config = manager.get_configuration(CONFIGURATION)
    labels = manager.get_label_manager(dataset_json)
    torch.manual_seed(0)
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import,
                                     determine_num_input_channels(manager, config, dataset_json),
                                     labels.num_segmentation_heads, deep_supervision=False)
    images = sorted(str(p) for p in (Path(nnUNet_raw) / name / "imagesTr").glob("*.nii.gz"))
    report = {"configuration": CONFIGURATION, "patch_size": list(config.patch_size),
              "batch_size": config.batch_size, "spacing": list(config.spacing),
              "features_per_stage": list(config.network_arch_init_kwargs["features_per_stage"]),
              "network": config.network_arch_class_name, "threads": torch.get_num_threads(), "seconds": {}}
    for label, mirroring in (("no_tta", False), ("tta", True)):
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    allow_tqdm=False)
        predictor.manual_initialization(network, manager, config, [network.state_dict()], dataset_json,
                                        "nnUNetTrainer", MIRROR_AXES_2D)
        (out_dir / label).mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        predictor.predict_from_files_sequential([images], str(out_dir / label), save_probabilities=False,
                                                overwrite=True)
        report["seconds"][label] = round(time.perf_counter() - start, 2)
        print(f"nnU-Net predictor ({label}): {report['seconds'][label]} s", flush=True)
    return report


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("MPLIVER_NNUNET_THREADS", "2")))
    out_json = Path(sys.argv[2])
    out_json.write_text(json.dumps(time_predictor(int(sys.argv[1]), out_json.parent), indent=1))
