"""Sharing adapters: the model card, push_to_hub (intercepted at the huggingface_hub API), predict."""

import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import ROOT, tiny_clip_processor
from huggingface_hub import CommitInfo, HfApi, ModelCard
from peft import get_peft_model
from PIL import Image

import mitp_peft
from mitp_peft import MITPConfig

LABELS = {0: "cat", 1: "dog", 2: "cow"}


def adapter(base_folder, **kwargs):
    from transformers import CLIPModel

    torch.manual_seed(0)
    config = MITPConfig(num_labels=3, id2label=LABELS, **kwargs)
    return get_peft_model(CLIPModel.from_pretrained(base_folder), config)


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8")) for _ in range(n)]


def test_save_writes_the_mitp_card(base_folder, tmp_path):
    model = adapter(base_folder)
    mitp_peft.describe_training(
        model, dataset="food101", metrics={"accuracy": 0.875}, training={"learning_rate": 0.001, "epochs": 3}
    )
    model.add_adapter("second", MITPConfig(num_labels=5, text_layers=[4], vision_layers=[5]))
    model.save_pretrained(tmp_path / "out")
    card = ModelCard.load(tmp_path / "out" / "README.md")
    data = card.data
    assert data.library_name == "peft" and data.base_model == str(base_folder)
    assert data.pipeline_tag == "image-classification" and data.datasets == ["food101"]
    assert {"mitp", "peft", "image-text-classification", f"base_model:adapter:{base_folder}"} <= set(data.tags)
    result = data.eval_results[0]
    assert (result.metric_type, result.metric_value, result.dataset_name) == ("accuracy", 0.875, "food101")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for text in (
        "mitp-peft is not on PyPI: install it from a copy of its source",
        f"trained with\nmitp-peft {mitp_peft.__version__}.",
        "import mitp_peft",
        f"**Trainable parameters:** {trainable:,}",
        "0: cat, 1: dog, 2: cow",
        "| `text_layers` | [1, 2, 3, 4] |",
        "| `learning_rate` | 0.001 |",
        "| accuracy | 0.8750 |",
        "arXiv:2401.14856",
    ):
        assert text in card.text, text
    second = ModelCard.load(tmp_path / "out" / "second" / "README.md")
    assert "5 labels" in second.text and "| `text_layers` | [4] |" in second.text
    assert "No evaluation results were recorded" in second.text


def test_card_usage_runs_as_written(base_folder, tmp_path):
    model = adapter(base_folder)
    mitp_peft.describe_training(model, repo_id=str(tmp_path / "adapter"))
    model.save_pretrained(tmp_path / "adapter")
    card = (tmp_path / "adapter" / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    namespace = {"image": images(1)[0]}
    exec(snippet, namespace)
    assert namespace["predictions"][0]["labels"][0] in LABELS.values()


def test_push_to_hub_uploads_adapter_files_and_card(base_folder, tmp_path, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = repo_id
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        calls["commit"] = (repo_id, {op.path_in_repo: op.path_or_fileobj for op in operations}, kwargs)
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0",
            commit_message="",
            commit_description="",
            oid="0" * 40,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    model = adapter(base_folder)
    mitp_peft.describe_training(model, metrics={"accuracy": 0.5})
    mitp_peft.push_to_hub(model, "someone/clip-mitp-food101", commit_message="first")
    repo_id, files, kwargs = calls["commit"]
    assert calls["create_repo"] == repo_id == "someone/clip-mitp-food101" and kwargs["commit_message"] == "first"
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    model.save_pretrained(tmp_path / "local")
    for name, content in files.items():
        assert content == (tmp_path / "local" / name).read_bytes(), name
    card = ModelCard(files["README.md"].decode())
    assert 'mitp_peft.from_pretrained("someone/clip-mitp-food101")' in card.text
    assert card.data.base_model == str(base_folder) and card.data.eval_results[0].metric_value == 0.5


def test_predict_top_k_matches_the_model(base_folder):
    model = adapter(base_folder)
    pictures, texts = images(5), ["a cat", "the dog", "cow", "a bird", "x"]
    got = mitp_peft.predict(model, pictures, texts, top_k=2, batch_size=2)
    processor = tiny_clip_processor(base_folder.parent)
    batch = processor(text=texts, images=pictures, return_tensors="pt", padding=True)
    with torch.no_grad():
        probabilities = model(**batch).logits.softmax(-1)
    for row, result in zip(probabilities, got, strict=True):
        top = row.topk(2)
        assert result["labels"] == [LABELS[i] for i in top.indices.tolist()]
        torch.testing.assert_close(torch.tensor(result["scores"]), top.values, rtol=1e-5, atol=1e-6)


def test_predict_multi_label_thresholds(base_folder):
    model = adapter(base_folder, problem_type="multi_label_classification")
    pictures, texts = images(2), ["a cat", "a dog"]
    everything = mitp_peft.predict(model, pictures, texts, threshold=0.0)
    assert all(sorted(r["labels"]) == sorted(LABELS.values()) for r in everything)
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in everything)
    assert mitp_peft.predict(model, pictures, texts, threshold=1.01) == [{"labels": [], "scores": []}] * 2
    with pytest.raises(ValueError, match="one text per image: got 2 images and 1 texts"):
        mitp_peft.predict(model, pictures, texts[:1])


@pytest.mark.slow
def test_predict_command_line(base_folder, tmp_path):
    model = adapter(base_folder)
    model.save_pretrained(tmp_path / "adapter")
    images(1)[0].save(tmp_path / "picture.png")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "predict.py"),
            str(tmp_path / "adapter"),
            "--image",
            str(tmp_path / "picture.png"),
            "--text",
            "a cat",
            "--top-k",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert (
        lines[0].startswith(str(tmp_path / "picture.png"))
        and len(re.findall(r"(cat|dog|cow) \d\.\d{3}", lines[0])) == 3
    )


def test_describe_training_needs_an_mitp_model(base_folder):
    from transformers import CLIPModel

    with pytest.raises(TypeError, match="Expected a PeftModel with an MITP adapter .* got CLIPModel"):
        mitp_peft.describe_training(CLIPModel.from_pretrained(base_folder), dataset="x")
    model = adapter(base_folder)
    mitp_peft.describe_training(model.base_model, dataset="food101")  # the tuner itself works too
    assert model.peft_config["default"].card_info == {"dataset": "food101"}


def test_a_pickled_model_unpickles_with_the_same_logits(base_folder, tmp_path):
    import io

    from helpers import make_inputs

    model = adapter(base_folder).eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    inputs = make_inputs()
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, model(**inputs).logits)
    backbone = again.get_base_model()
    assert type(backbone).__name__ == "CLIPModel" and backbone._mitp_tuner is again.base_model
    assert again.unload().__class__ is type(model.get_base_model()).__mro__[1]  # unload gives the plain class back


def test_a_truncated_weights_file_is_named_on_pefts_own_loading_path(base_folder, tmp_path):
    from peft import PeftModel
    from transformers import CLIPModel

    adapter(base_folder).save_pretrained(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is truncated or not a safetensors file.*save "
                       r"the adapter again"):  # fmt: skip
        PeftModel.from_pretrained(CLIPModel.from_pretrained(base_folder), tmp_path)
    weights.unlink()
    torch.save({}, tmp_path / "adapter_model.bin")
    with pytest.raises(
        ValueError, match=r"adapter_model.bin, a pickle: mitp-peft loads weights only from safetensors"
    ):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(base_folder), tmp_path)
    with pytest.raises(ValueError, match=r"adapter_model.bin, a pickle: mitp-peft loads weights only"):
        mitp_peft.from_pretrained(str(tmp_path))  # the same words on the package's own loading path


def test_an_adapter_id_that_is_no_folder_says_the_hub_is_offline():
    with pytest.raises(OSError, match=r"'user/name' is not a local folder, and the hub is offline \(HF_HUB_OFFLINE is "
                       r"set\).*unset HF_HUB_OFFLINE"):  # fmt: skip
        mitp_peft.from_pretrained("user/name")


def test_a_local_backbone_given_by_a_relative_path_is_recorded_absolute(base_folder, tmp_path, monkeypatch):
    from transformers import CLIPModel

    monkeypatch.chdir(base_folder.parent)
    model = get_peft_model(CLIPModel.from_pretrained(f"./{base_folder.name}"), MITPConfig(num_labels=3))
    assert model.peft_config["default"].base_model_name_or_path == str(base_folder.resolve())
    model.save_pretrained(tmp_path / "adapter")
    monkeypatch.chdir(tmp_path)  # predict.py from another folder finds the backbone
    assert mitp_peft.from_pretrained(str(tmp_path / "adapter")).peft_config["default"].num_labels == 3
    with pytest.raises(OSError, match=r"(?s)Could not load the base model 'gone/clip'.*There is no folder "
                       r".*gone/clip, and as a hub id it could not be loaded"):  # fmt: skip
        mitp_peft.from_pretrained(str(tmp_path / "adapter"), base_model_name_or_path="gone/clip")


def test_predict_answers_for_several_adapters_in_one_pass(base_folder):
    model = adapter(base_folder)
    model.add_adapter("tags", MITPConfig(num_labels=2, id2label={0: "indoor", 1: "outdoor"}, prompt_length=12))
    model.add_adapter("flags", MITPConfig(num_labels=3, problem_type="multi_label_classification"))
    pictures, texts = images(3), ["a cat", "a dog", "a cow"]  # short enough for every adapter's prompts
    both = mitp_peft.predict(model, pictures, texts, top_k=2, threshold=0.0, adapters=["default", "tags", "flags"])
    assert list(both) == ["default", "tags", "flags"]
    for name in both:
        model.set_adapter(name)
        alone = mitp_peft.predict(model, pictures, texts, top_k=2, threshold=0.0)
        assert [r["labels"] for r in both[name]] == [r["labels"] for r in alone]
        for ours, theirs in zip(both[name], alone, strict=True):
            assert ours["scores"] == pytest.approx(theirs["scores"], abs=1e-5)
    assert {label for result in both["tags"] for label in result["labels"]} <= {"indoor", "outdoor"}
    assert all(len(result["labels"]) == 3 for result in both["flags"])  # multi-label, every score over 0.0
    with pytest.raises(
        ValueError, match=r"Pair 1 lacks its text: answers from several adapters at once take complete"
    ):
        mitp_peft.predict(model, pictures[:2], ["a", None], adapters=["default", "tags"])
