"""Every Python block of the README runs as written, in order, on tiny local models in place of the hub ids."""

import re

import pytest
from helpers import ROOT
from huggingface_hub import CommitInfo, HfApi

HUB_MODEL = "openai/clip-vit-base-patch16"
FOOD101 = "/data/upmc_food101"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) == 6
    assert all(HUB_MODEL in block for block in blocks[:2]) and FOOD101 in blocks[1]


@pytest.mark.slow
def test_every_python_block_runs(base_folder, food101, tmp_path, monkeypatch):
    pushed = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: type("Url", (), {"repo_id": repo_id}))

    def create_commit(self, repo_id, operations, **kwargs):
        pushed[repo_id] = sorted(op.path_in_repo for op in operations)
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/1", commit_message="", commit_description="", oid="1"
        )

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(python_blocks(), start=1):
        code = block.replace(HUB_MODEL, str(base_folder)).replace(FOOD101, str(food101))
        exec(compile(code, f"README block {number}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "out" / "adapter" / "README.md").is_file()
    assert {"model.onnx", "mitp_onnx.json", "processor_config.json"} <= {
        p.name for p in (tmp_path / "exported").iterdir()
    }
    assert pushed == {"user/clip-mitp-food101": ["README.md", "adapter_config.json", "adapter_model.safetensors"]}


def test_the_one_future_warning_of_creating_and_loading_comes_from_peft(tmp_path, recwarn):
    import warnings

    from helpers import make_inputs, tiny_clip
    from peft import PeftModel, get_peft_model

    from mitp_peft import MITPConfig

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
        model(**make_inputs())
        model.save_pretrained(tmp_path)
        PeftModel.from_pretrained(tiny_clip(), tmp_path)
        future = [w for w in recwarn if issubclass(w.category, FutureWarning)]
    assert future and all("is_gradient_checkpointing" in str(w.message) for w in future)
    assert all("/peft/" in w.filename or "/transformers/" in w.filename for w in future)
