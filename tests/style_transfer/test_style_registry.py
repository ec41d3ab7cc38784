"""AlignerSpec: the one typed name + parameters of an aligner that crosses stage boundaries."""

from __future__ import annotations

import json

import pytest

from style_transfer import Compose, Reinhard, get_aligner
from style_transfer.registry import ALIGNER_NAMES, AlignerSpec


@pytest.mark.parametrize(("spec", "pixels"), [
    (AlignerSpec("none"), False), (AlignerSpec("sensor"), False), (AlignerSpec("reinhard"), False),
    (AlignerSpec("reinhard", {"mode": "object"}), True), (AlignerSpec("histogram"), True), (AlignerSpec("fda"), True),
    (AlignerSpec("reinhard+sensor"), False), (AlignerSpec("sensor+fda"), True),
    (AlignerSpec("chain", {"steps": [["reinhard", {"mode": "object"}], ["sensor", {}]]}), True),
    (AlignerSpec("chain", {"steps": [["reinhard", {}], "sensor"]}), False),
])
def test_needs_style_pixels_is_answered_without_building_and_agrees_with_the_built_aligner(spec, pixels):
    assert spec.needs_style_pixels is pixels
    assert spec.build().needs_style_pixels is pixels


def test_learned_needs_pixels_and_is_not_built_by_check(tmp_path):
    spec = AlignerSpec("learned", {"path": str(tmp_path / "missing.ts"), "kind": "torchscript"})
    assert spec.is_learned and spec.needs_style_pixels
    spec.check()  # reads no weights: the file does not exist
    with pytest.raises(Exception, match="missing.ts"):
        spec.build()


def test_json_round_trip_parse_and_params():
    spec = AlignerSpec.parse("reinhard", '{"mode": "object"}')
    assert spec == AlignerSpec("reinhard", {"mode": "object"})
    assert spec.to_json() == {"name": "reinhard", "params": {"mode": "object"}}
    assert AlignerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    run = spec.with_params(strength=0.5)
    assert run.params == {"mode": "object", "strength": 0.5} and spec.params == {"mode": "object"}
    built = run.build()
    assert isinstance(built, Reinhard) and built.mode == "object" and built.strength == 0.5
    assert isinstance(AlignerSpec().build(), Compose)  # the default chain, reinhard+sensor
    assert str(spec) == 'reinhard {"mode": "object"}' and str(AlignerSpec("none")) == "none"


def test_bad_specs_are_refused_with_the_name():
    with pytest.raises(ValueError, match="aligner-params must be a JSON object"):
        AlignerSpec.parse("reinhard", "[1]")
    with pytest.raises(ValueError, match="aligner-params must be a JSON object"):
        AlignerSpec.parse("reinhard", "{bad")
    with pytest.raises(ValueError, match="unknown aligner 'issa' in 'reinhard\\+issa'"):
        AlignerSpec("reinhard+issa")
    with pytest.raises(ValueError, match="JSON values"):
        AlignerSpec("reinhard", {"mode": object()})
    with pytest.raises(TypeError, match="aligner 'reinhard'"):
        AlignerSpec("reinhard", {"beta": 0.1}).check()
    assert set(ALIGNER_NAMES) >= {"none", "reinhard", "sensor", "histogram", "fda", "learned", "chain"}
    assert get_aligner("none").needs_style_pixels is False
