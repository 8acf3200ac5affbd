"""nnU-Net v2's own steps, run in a child process by `mpliver experiments nnunet` (see nnunet_experiment.py).

nnU-Net reads nnUNet_raw / nnUNet_preprocessed / nnUNet_results when it is imported, so each step runs in a
process started with those variables set to folders inside the experiment folder. Steps:

    python -m mpliver.experiments.nnunet_worker prepare DATASET_ID CONFIG
        fingerprint, plan (nnU-Net's default ExperimentPlanner) and pre-process CONFIG with one process,
        then copy the export's splits_final.json next to the plans (nnU-Net then uses mpliver's folds)
    python -m mpliver.experiments.nnunet_worker train DATASET_ID CONFIG FOLD BUDGET_JSON
        train fold FOLD with nnU-Net's trainer shortened to the budget (epochs, iterations per epoch,
        validation iterations, optionally batch size) on the CPU, then nnU-Net's final validation: the
        held-out fold predicted by nnUNetPredictor (mirroring TTA on, as nnU-Net does) into fold_F/validation/

The trainer is instantiated directly instead of through nnU-Net's trainer lookup by name: that lookup imports
every trainer module, and the Primus ones need timm (which the extra leaves out, see mpliver.extras).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.experiment_planning.plan_and_preprocess_api import (
    extract_fingerprints,
    plan_experiments,
    preprocess,
)
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

PLANS = "nnUNetPlans"
_BUDGET: dict = {}


class nnUNetTrainer_mpliverBudget(nnUNetTrainer):  # noqa: N801 (nnU-Net's naming of trainer variants)
    """nnU-Net's default trainer with the epoch budget of the run (like its nnUNetTrainer_Xepochs variants);
    everything else (loss, augmentation, poly LR, SGD, deep supervision, final validation) is nnU-Net's."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cpu")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(_BUDGET["epochs"])
        self.num_iterations_per_epoch = int(_BUDGET["iterations_per_epoch"])
        self.num_val_iterations_per_epoch = int(_BUDGET["val_iterations_per_epoch"])
        if _BUDGET.get("batch_size"):
            self.batch_size = int(_BUDGET["batch_size"])
            self.configuration_manager.configuration["batch_size"] = self.batch_size


def prepare(dataset_id: int, configuration: str) -> None:
    """Fingerprint, plan and pre-process one configuration; put the export's folds where nnU-Net reads
    them."""
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, clean=True)
    plan_experiments([dataset_id])
    preprocess([dataset_id], PLANS, configurations=(configuration,), num_processes=(1,))
    name = convert_id_to_dataset_name(dataset_id)
    shutil.copyfile(Path(nnUNet_raw) / name / "splits_final.json",
                    Path(nnUNet_preprocessed) / name / "splits_final.json")


def train(dataset_id: int, configuration: str, fold: int, budget: dict) -> None:
    """Train one fold within `budget` and predict its held-out cases (nnU-Net's final validation)."""
    _BUDGET.clear()
    _BUDGET.update(budget)
    name = convert_id_to_dataset_name(dataset_id)
    folder = Path(nnUNet_preprocessed) / name
    plans = load_json(str(folder / f"{PLANS}.json"))
    dataset_json = load_json(str(folder / "dataset.json"))
    plans["continue_training"] = False  # what nnU-Net's run_training sets for a fresh run
    trainer = nnUNetTrainer_mpliverBudget(plans, configuration, fold, dataset_json, torch.device("cpu"))
    trainer.run_training()
    trainer.perform_actual_validation(False)


def main(argv: list[str]) -> None:
    torch.set_num_threads(int(os.environ.get("MPLIVER_NNUNET_THREADS", "2")))
    step, dataset_id, configuration = argv[0], int(argv[1]), argv[2]
    if step == "prepare":
        prepare(dataset_id, configuration)
    elif step == "train":
        train(dataset_id, configuration, int(argv[3]), json.loads(argv[4]))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
