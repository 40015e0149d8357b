"""MITPConfig: defaults, validation messages, layer resolution against a backbone, JSON round trip."""

import pytest
from helpers import MAX_POSITIONS, TEXT_LAYERS, VISION_LAYERS
from peft import PeftConfig, get_peft_model

from mitp_peft import MITP_PEFT_TYPE, MITPConfig
from mitp_peft.tuner.placement import resolve_layers, resolve_widths


def test_defaults_follow_method():
    config = MITPConfig(num_labels=101)
    assert config.peft_type == "MITP" and config.peft_type is MITP_PEFT_TYPE
    assert config.peft_type.value == "MITP"
    assert (config.prompt_length, config.translator_hidden_size, config.temperature) == (8, None, 0.1)
    assert (config.hub_attention, config.memory_decay, config.head_uses_memory) == ("gated", 0.0, True)
    assert (config.head, config.head_hidden_size, config.layer_prompts, config.zero_shot_template) == (
        "mlp",
        None,
        False,
        None,
    )
    assert config.problem_type == "single_label_classification"
    resolve_layers(config, 12, 24)
    assert config.text_layers == [8, 9, 10, 11] and config.vision_layers == [20, 21, 22, 23]
    resolve_widths(config, 768)  # unset widths follow the text tower: a third of it
    assert (config.translator_hidden_size, config.head_hidden_size) == (256, 256)
    kept = MITPConfig(num_labels=2, translator_hidden_size=100, head_hidden_size=7)
    resolve_widths(kept, 768)
    assert (kept.translator_hidden_size, kept.head_hidden_size) == (100, 7)
    assert config.num_interaction_layers == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "needs num_labels"),
        (dict(num_labels=0), "num_labels must be an integer >= 1, got 0"),
        (dict(num_labels=2, prompt_length=0), "prompt_length must be an integer >= 1, got 0"),
        (dict(num_labels=2, task_type="SEQ_CLS"), "does not take a task_type"),
        (dict(num_labels=2, temperature=0), "temperature must be > 0"),
        (dict(num_labels=2, memory_decay=1.0), r"memory_decay must be in \[0, 1\)"),
        (dict(num_labels=2, hub_attention="both"), "hub_attention must be one of"),
        (dict(num_labels=2, problem_type="regression"), "problem_type must be one of"),
        (dict(num_labels=2, num_interaction_layers=0), "num_interaction_layers must be an integer >= 1"),
        (dict(num_labels=2, text_layers=[1, 2]), "Give both text_layers and vision_layers"),
        (dict(num_labels=2, text_layers=[1, 2], vision_layers=[3]), "same length.*2 text layers.*1 vision layers"),
        (dict(num_labels=2, text_layers=[1, 1], vision_layers=[2, 3]), r"text_layers lists layer\(s\) \[1\] more"),
        (dict(num_labels=2, text_layers=[2, 1], vision_layers=[2, 3]), "text_layers must be increasing"),
        (dict(num_labels=2, text_layers=[-1], vision_layers=[2]), "each entry of text_layers must be an integer"),
        (
            dict(num_labels=2, num_interaction_layers=3, text_layers=[1, 2], vision_layers=[2, 3]),
            "num_interaction_layers=3 disagrees with the 2 explicit layer pairs",
        ),
        (dict(num_labels=2, id2label={0: "a", 2: "b"}), r"id2label must map exactly the indices 0..1"),
        (dict(num_labels=2, id2label={0: "a", 1: "b"}, label2id={"a": 1, "b": 0}), "inverse of id2label"),
    ],
)
def test_invalid_configs_name_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MITPConfig(**kwargs)


def test_labels_maps_complete_each_other():
    config = MITPConfig(num_labels=2, label2id={"cat": 0, "dog": 1})
    assert config.id2label == {0: "cat", 1: "dog"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_interaction_layers=VISION_LAYERS), f"exceeds the backbone.*choose at most {TEXT_LAYERS}"),
        (dict(text_layers=[1, TEXT_LAYERS], vision_layers=[1, 2]), rf"layer\(s\) \[{TEXT_LAYERS}\] outside"),
        (dict(text_layers=[1], vision_layers=[VISION_LAYERS + 1]), f"must be in 0..{VISION_LAYERS - 1}"),
        (dict(prompt_length=MAX_POSITIONS - 1), f"Choose prompt_length <= {MAX_POSITIONS - 2}"),
    ],
)
def test_backbone_checks_at_get_peft_model(base, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_peft_model(base, MITPConfig(num_labels=3, **kwargs))


def test_config_json_round_trip(base, tmp_path):
    config = MITPConfig(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, hub_attention="cross", memory_decay=0.5)
    model = get_peft_model(base, config)
    model.peft_config["default"].save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is MITPConfig
    assert loaded.id2label == {0: "a", 1: "b", 2: "c"}
    assert loaded.text_layers == [1, 2, 3, 4] and loaded.vision_layers == [2, 3, 4, 5]
    assert loaded.target_modules == model.peft_config["default"].target_modules
    for field in ("hub_attention", "memory_decay", "num_labels", "text_layers", "vision_layers", "prompt_length"):
        assert getattr(loaded, field) == getattr(config, field)


def test_a_live_adapters_config_pickles_without_its_model(base):
    import pickle

    config = get_peft_model(base, MITPConfig(num_labels=3)).peft_config["default"]
    config.card_info["dataset"] = "food101"
    again = pickle.loads(pickle.dumps(config))
    assert again.to_dict() == config.to_dict() and again.card_info == {"dataset": "food101"}
    assert "card_info" not in config.to_dict()  # adapter_config.json holds settings, not the card's notes


def test_target_modules_are_refused_naming_the_fields_that_choose_the_layers():
    with pytest.raises(ValueError, match=r"does not take target_modules \(got \['q_proj'\]\).*num_interaction_layers"
                       r".*text_layers and vision_layers"):  # fmt: skip
        MITPConfig(num_labels=2, target_modules=["q_proj"])


def test_help_shows_every_field_with_its_description():
    import pydoc

    from mitp_peft.tuner.config import mitp_fields

    shown = " ".join(pydoc.render_doc(MITPConfig, renderer=pydoc.plaintext).split())
    for f in mitp_fields():
        assert f"{f.name} (`" in shown
        assert " ".join(f.metadata["help"].split()) in shown.replace(" | ", " ")
