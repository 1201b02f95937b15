"""Variants are data: a name mapped to config overrides (`scope_lib.experiments.grid.Variant`). A family
member made from its value trains the run its written-out name always named (same config, same
registry key), and the name is only a label."""

import numpy as np
import pytest

from scope_lib.experiments.grid import (Variant, as_variant, experiment_config, family_variant, named_variant,
                                   tuned_lr, variant_method)
from scope_lib.experiments.registry import run_key


def test_a_family_member_is_its_value_in_the_overrides_and_a_label():
    tau = float(np.random.default_rng(3).choice([0.25, 0.5, 2.0, 4.0]))
    variant = family_variant("scope_tau", tau)
    assert variant == Variant(f"scope_tau{tau}", (("method", "scope"), ("scope.tau", tau)))
    assert variant.settings["scope.tau"] is tau  # the float itself, never read back out of the name
    assert variant_method(variant) == "scope" and as_variant(variant) is variant
    assert family_variant("scope_tau_student", 3.0).name == "scope_tau_student3"  # the sweep's names: g format
    assert family_variant("hybrid_beta", 0.3).settings == {"method": "hybrid", "hybrid.beta": 0.3}
    with pytest.raises(ValueError, match="family 'scope_temp'"):
        family_variant("scope_temp", 0.5)


@pytest.mark.parametrize("family, value, typed", [("scope_tau", 0.5, "scope_tau0.5"), ("scope_tau", 2.0, "scope_tau2.0"),
                                                  ("scope_tau_student", 0.05, "scope_tau_student0.05"),
                                                  ("hybrid_beta", 0.3, "hybrid_beta0.3")])
def test_a_member_trains_the_run_its_typed_name_names(family, value, typed):
    variant = family_variant(family, value)
    assert variant.name == typed and named_variant(typed) == variant
    made, named = experiment_config("tiny", variant, 2), experiment_config("tiny", typed, 2)
    assert made == named and run_key(made) == run_key(named)  # runs already trained are found
    assert tuned_lr("tiny", variant) == tuned_lr("tiny", typed)


def test_named_variants_and_typed_names():
    assert named_variant("opd").settings == {"method": "opd", "rollout.group_size": 1}
    assert named_variant("no_dpaw").method == "scope"
    with pytest.raises(ValueError, match="expected a number after 'scope_tau'"):
        named_variant("scope_tauX")
    with pytest.raises(ValueError, match="variant 'sft'"):
        named_variant("sft")
