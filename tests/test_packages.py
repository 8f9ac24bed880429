"""What a recipe asks for that is not installed (trl_plugins/checks/packages.py) stops the run in one line, exit 2,
before any model loads: a report_to integration, an attention kernel, an optimizer's package, DeepSpeed for a ZeRO
config, Liger kernels.

    python -m pytest tests/test_packages.py -q
"""

from __future__ import annotations

import importlib.util

import pytest


def _error(run_cli, recipe: str, *argv: str) -> str:
    code, _, err = run_cli("train", "orpo", "--config", recipe, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _absent(module: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")


@pytest.mark.parametrize(("extra", "missing", "expected"), [
    ({"report_to": ["wandb"]}, "wandb", "report_to 'wandb': wandb is not installed (pip install wandb)"),
    ({"report_to": ["none"]}, None, None),
    ({"report_to": "wandbb"}, None, "report_to 'wandbb' is not an integration (known: "),
    ({"attn_implementation": "flash_attention_2"}, None,
     "attn_implementation 'flash_attention_2' runs on a GPU (cuda, mlu, musa, npu, xpu) and this machine has none"),
    ({"model_init_kwargs": {"attn_implementation": "flash_attention_3"}}, None,
     "attn_implementation 'flash_attention_3' runs on a GPU (cuda)"),
    ({"attn_implementation": "flash_atention_2"}, None, "'flash_atention_2' is not an attention implementation"),
    ({"optim": "galore_adamw", "optim_target_modules": ["q_proj"]}, "galore_torch",
     "optim 'galore_adamw': You need to install `galore_torch`"),
    ({"optim": "grokadamw"}, "grokadamw", "optim 'grokadamw': Please install grokadamw"),
    ({"optim": "adamw_torch_4bit"}, "torchao", "optim 'adamw_torch_4bit':"),
    ({"use_liger_kernel": True}, "liger_kernel", "use_liger_kernel is set but liger-kernel is not installed"),
    ({"deepspeed": {"zero_optimization": {"stage": 2}}}, "deepspeed",
     "deepspeed is set (a DeepSpeed config): DeepSpeed is not installed"),
])
def test_a_missing_package_is_one_line_before_any_model(run_cli, tiny_recipe, no_model_loading, extra, missing,
                                                        expected):
    if missing:
        _absent(missing)
    if expected is None:  # asks for nothing missing: the run gets past the checks (and would train)
        from trl_plugins.checks.packages import check_packages
        from trl_plugins.registry import get_registry
        from trl_plugins.run.recipe import parse_run

        parsed = parse_run(get_registry().trainer("orpo"), ["--config", tiny_recipe(extra)])
        check_packages(parsed.training_args, parsed.model_args, parsed.where)
        return
    assert expected in _error(run_cli, tiny_recipe(extra))


def test_an_installed_optimizer_package_passes(tiny_recipe):
    """bitsandbytes is a dependency: its 8-bit optimizers pass the check (transformers' own lookup finds them)."""
    from trl_plugins.checks.packages import check_packages
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import parse_run

    parsed = parse_run(get_registry().trainer("orpo"), ["--config", tiny_recipe({"optim": "adamw_bnb_8bit"})])
    check_packages(parsed.training_args, parsed.model_args, parsed.where)


def test_flash_attention_on_a_gpu_without_its_package(run_cli, tiny_recipe, no_model_loading, monkeypatch):
    """With a GPU but neither flash-attn nor a hub kernel to stand in, the line names the package."""
    import transformers.modeling_flash_attention_utils as fa

    row = dict(fa.FLASH_ATTENTION_COMPATIBILITY_MATRIX[2], supported_devices=((lambda: True, "cuda"),),
               general_availability_check=lambda kernels_fallback_ok=False: False)
    monkeypatch.setitem(fa.FLASH_ATTENTION_COMPATIBILITY_MATRIX, 2, row)
    line = _error(run_cli, tiny_recipe({"attn_implementation": "flash_attention_2"}))
    assert "attn_implementation 'flash_attention_2': its package is not installed" in line
