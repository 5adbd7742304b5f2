"""conf/base documents the library's defaults: the two must not drift apart."""

from pathlib import Path

import yaml

from efm_seg import efm

CONF = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_efm.yml"


def test_conf_base_matches_the_library_defaults():
    params = yaml.safe_load(CONF.read_text())["efm_method"]
    assert params["map"] == {"alpha": efm.DEFAULT_ALPHA, "sigma": efm.DEFAULT_SIGMA}
    loss = efm.EFMLoss(7, ignore_index=255, **params["loss"])
    default = efm.EFMLoss(7, ignore_index=255)
    assert loss.extra_repr() == default.extra_repr()
