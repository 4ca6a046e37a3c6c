"""`automl run --model bench.fixed_cost:FIXED_COST`: the fixed-cost workload of bench/workload.py as a
tunable model. A module of its own so that the study's driver, which only needs this description, does not
import torch and Lightning with the workload."""

import dataclasses

from automl.registry import get_model

# MAL's spec, search space and checkpoint names, with the workload's runs in place of MAL's
FIXED_COST = dataclasses.replace(
    get_model("mal"),
    name="fixed-cost",
    fit="bench.workload:fit",
    evaluate="bench.workload:evaluate",
    export_weights="bench.workload:export_weights",
)
