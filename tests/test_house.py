"""The shape of the package: no import circles, one source of truth for the settings, and a forward that runs down
the layers without calling back up."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, script_module

from mitp_peft.arguments import MITPArguments
from mitp_peft.tuner.config import DATA, LABELS, RECORD, SETTING, mitp_fields

MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "mitp_peft").rglob("*.py")
    if "metric_modules" not in path.parts
)


def test_every_module_imports_on_its_own_in_any_order():
    """In a fresh interpreter, each module is imported after every mitp_peft module was forgotten, in both orders: a
    circle between modules shows as an ImportError of a partly built one."""
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'mitp_peft']:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    both = [subprocess.Popen([sys.executable, "-c", code, *names], stderr=subprocess.PIPE, text=True, cwd=ROOT)
            for names in (MODULES, MODULES[::-1])]  # fmt: skip
    for process in both:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-2000:]


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    """The import graph of mitp_peft (module-level imports, read from the source) has no circle."""
    import ast

    graph = {}
    for name in MODULES:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.parse(path.read_text()).body:  # module level only: what runs at import
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                edges.update(
                    f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names
                )
        graph[name] = {edge for edge in edges if edge in MODULES and edge != name}

    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt))) for nxt in graph[start])

    assert not [
        name for name in graph if name != "mitp_peft" and reaches(name, name) and "mitp_peft" not in graph[name]
    ]


def test_scripts_take_every_mitp_setting_with_its_help():
    settings = {f.name for f in mitp_fields(SETTING)}
    assert settings == {f.name for f in mitp_fields()} - {f.name for f in mitp_fields(DATA, LABELS, RECORD)}
    assert {f for f in MITPArguments.__dataclass_fields__} == settings
    scripts = ("examples/train.py", "examples/train_accelerate.py")
    helps = {script: subprocess.Popen([sys.executable, str(ROOT / script), "--help"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
             for script in scripts}  # fmt: skip
    for script, process in helps.items():
        out, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors[-2000:]
        for name in settings:
            assert f"--{name} " in out or f"--{name}\n" in out, f"{script} lacks --{name}"
        help_text = next(f.metadata["help"] for f in mitp_fields() if f.name == "prompt_length")
        assert help_text.split("(")[0].strip() in " ".join(out.split())


def test_the_card_lists_every_setting(tmp_path):
    from helpers import tiny_clip
    from peft import get_peft_model

    from mitp_peft import MITPConfig

    get_peft_model(tiny_clip(), MITPConfig(num_labels=3)).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    for field in mitp_fields():
        listed = f"| `{field.name}` |" in card
        assert listed == (field.metadata.get("role", SETTING) in (SETTING, DATA)), field.name
    assert {f.name for f in mitp_fields(LABELS, RECORD)} == {"id2label", "label2id", "target_modules", "built_for"}
    assert "0: 0, 1: 1, 2: 2" in card  # the labels have their own section


def test_the_examples_import_nothing_by_path():
    for path in [
        *(ROOT / "examples").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
        *(ROOT / "tests").glob("*.py"),
    ]:
        assert "sys.path.insert" not in path.read_text().replace('"sys.path.insert"', ""), path
    budget = script_module("benchmarks/budget.py")  # a script imports as a module from its file, by its path
    assert budget.__file__ == str(ROOT / "benchmarks" / "budget.py") and "CLIP ViT-L/14" in budget.BACKBONES


def _modules_called(run) -> tuple[list[str], list[str]]:
    """The package modules `run()` calls into, in order, and each call into a module further up the call stack
    (a callee calling back into one of its callers' modules), as "caller -> callee" of module:function."""
    entered, stack, callbacks = [], [], []

    def profile(frame, event, arg):
        path = frame.f_code.co_filename
        if "/mitp_peft/" not in path:
            return
        module = path.split("/mitp_peft/")[1]
        if event == "call":
            caller = stack[-1] if stack else None
            if caller != module and module in stack:
                callbacks.append(f"{caller}:{frame.f_back.f_code.co_name} -> {module}:{frame.f_code.co_name}")
            stack.append(module)
            if not entered or entered[-1] != module:
                entered.append(module)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return entered, callbacks


def test_the_forward_runs_down_the_layers_without_calling_back_up():
    """One training forward goes peft's tuner -> the adapter -> the engine -> the towers and hub, and back by
    returning: no module calls back into a module up its call stack (the engine once asked the adapter for its
    prompts and placeholders mid-way), except a tower subclass's call into its base class. The inputs are checked in
    one module, the loss computed in another."""
    import torch
    from families import mitp
    from helpers import make_inputs, tiny_clip

    model = mitp(tiny_clip())
    inputs, labels = make_inputs(), torch.tensor([0, 1, 2])
    model(**inputs, labels=labels)  # warm-up: lazy imports
    entered, callbacks = _modules_called(lambda: model(**inputs, labels=labels))
    assert all(callback.endswith("towers/base.py:embed_tokens") for callback in callbacks), callbacks
    assert entered.count("method/loss.py") == 1 and entered.index("method/loss.py") > entered.index("method/head.py")
    assert entered.index("method/inputs.py") < entered.index("method/engine.py") and entered[-1] == "tuner/model.py"
