"""Models and processors: loading (`loading.py`, incl. embedded models), LoRA/QLoRA presets (`peft_presets.py`)
and image helpers and checks for vision-language models (`vision.py`)."""
