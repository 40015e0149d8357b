"""Registration with peft's tables: idempotent, refuses clashes, and what loading without the import does."""

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT
from peft import mapping

from mitp_peft import MITPConfig, MITPModel
from mitp_peft.tuner.peft_type import MITP_PEFT_TYPE, MITP_PREFIX
from mitp_peft.tuner.registration import register


def test_import_registers_config_tuner_and_prefix():
    assert mapping.PEFT_TYPE_TO_CONFIG_MAPPING["MITP"] is MITPConfig
    assert mapping.PEFT_TYPE_TO_TUNER_MAPPING["MITP"] is MITPModel
    assert mapping.PEFT_TYPE_TO_PREFIX_MAPPING["MITP"] == MITP_PREFIX == MITPModel.prefix
    assert "MITP" not in mapping.PEFT_TYPE_TO_MIXED_MODEL_MAPPING


def test_register_is_idempotent():
    before = {k: dict(t) for k, t in _tables().items()}
    register()
    register()
    assert {k: dict(t) for k, t in _tables().items()} == before


def test_refuses_a_name_taken_by_another_method():
    table = mapping.PEFT_TYPE_TO_TUNER_MAPPING
    table[MITP_PEFT_TYPE] = object
    try:
        with pytest.raises(RuntimeError, match="already registered with another tuner"):
            register()
    finally:
        table[MITP_PEFT_TYPE] = MITPModel


def test_refuses_a_prefix_taken_by_another_method():
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING["OTHER"] = MITP_PREFIX
    try:
        with pytest.raises(RuntimeError, match="prefix 'mitp_' is already used by the peft method OTHER"):
            register()
    finally:
        del mapping.PEFT_TYPE_TO_PREFIX_MAPPING["OTHER"]


def _tables():
    return {
        "config": mapping.PEFT_TYPE_TO_CONFIG_MAPPING,
        "tuner": mapping.PEFT_TYPE_TO_TUNER_MAPPING,
        "prefix": mapping.PEFT_TYPE_TO_PREFIX_MAPPING,
    }


def _run(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter that imports the tests' helpers by name."""
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, env=environment
    )


@pytest.mark.slow
def test_loading_paths_in_a_fresh_process(tmp_path):
    """peft has no plugin hook: without `import mitp_peft` it cannot know MITP. This pins down both paths the
    README documents: the import (or `mitp_peft.from_pretrained`) loads; without it peft fails with KeyError 'MITP'."""
    setup = """
        import torch
        from helpers import tiny_clip, make_inputs
    """
    save = (
        setup
        + f"""
        import mitp_peft
        from peft import get_peft_model
        base = tiny_clip()
        base.save_pretrained({str(tmp_path / "base")!r})
        model = get_peft_model(base, mitp_peft.MITPConfig(num_labels=3))
        model.peft_config['default'].base_model_name_or_path = {str(tmp_path / "base")!r}
        model.save_pretrained({str(tmp_path / "adapter")!r})
        torch.save(model(**make_inputs()).logits, {str(tmp_path / "logits.pt")!r})
    """
    )
    assert _run(save).returncode == 0, _run(save).stderr
    without_import = _run(
        f"""
        import sys
        from peft import PeftModel
        from transformers import CLIPModel
        base = CLIPModel.from_pretrained({str(tmp_path / "base")!r})
        try:
            PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r})
        finally:
            assert "mitp_peft" not in sys.modules
    """
    )
    assert without_import.returncode != 0 and "KeyError: 'MITP'" in without_import.stderr
    with_helper = _run(
        setup
        + f"""
        import mitp_peft
        model = mitp_peft.from_pretrained({str(tmp_path / "adapter")!r})
        expected = torch.load({str(tmp_path / "logits.pt")!r})
        assert torch.equal(model(**make_inputs()).logits, expected)
        from peft import AutoPeftModel
        auto = AutoPeftModel.from_pretrained({str(tmp_path / "adapter")!r})
        assert torch.equal(auto(**make_inputs()).logits, expected)
        print("loaded")
    """
    )
    assert with_helper.returncode == 0 and "loaded" in with_helper.stdout, with_helper.stderr
