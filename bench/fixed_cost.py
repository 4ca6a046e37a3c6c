"""`automl run --model bench.fixed_cost:FIXED_COST`: the fixed-cost workload of bench/workload.py as a
tunable model. A module of its own so that the study's driver, which only needs this description, does not
import torch and Lightning with the workload."""

from automl.registry import SPACES_DIR, TunableModel

FIXED_COST = TunableModel(
    name="fixed-cost",
    spec_module="mal.spec",
    fit="bench.workload:fit",
    evaluate="bench.workload:evaluate",
    search_space=SPACES_DIR / "mal.yaml",
    weights="bench.workload:weights",
)
