"""``embedded:smollm2-tiny-llava``: a small LLaVA-style vision-language model built offline, in code.

Language model: the embedded SmolLM2-135M-Instruct (its weights, unchanged, plus one new ``<image>`` token).
Vision tower: a small RANDOM SigLIP encoder (2 layers, width 128, 64x64 images, 16x16 patches -> 16 image tokens)
and a random 2-layer projector, as in LLaVA. It is not a pretrained VLM: it exists so that vision-language trainers
(mDPO) run end to end on a CPU with no download; the projector (and LoRA on the language model) learn to read the
frozen random features during training.

:func:`llava_from_text_model` is also what the tests use to build a tiny VLM around a tiny random Llama.
"""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEMO_VISION = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   image_size=64, patch_size=16)


def llava_from_text_model(text_model, tokenizer, vision: dict, seed: int = 0, chat_template: str | None = None):
    """Wrap a causal LM (weights kept) and its tokenizer into ``(LlavaForConditionalGeneration, LlavaProcessor)`` with
    a random SigLIP vision tower of config ``vision`` and a random projector; adds the ``<image>`` token."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipVisionConfig
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    text_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    text_config = text_model.config
    vision_config = SiglipVisionConfig(**vision)
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=text_config.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(text_model.model.state_dict())
    model.lm_head.load_state_dict(text_model.lm_head.state_dict())
    if text_config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    size = vision["image_size"]
    image_processor = SiglipImageProcessorPil(size={"height": size, "width": size})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=chat_template or CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    return model, processor


def build(base_path: str, target) -> None:
    """Build ``smollm2-tiny-llava`` from the converted SmolLM2 checkpoint at ``base_path`` into ``target``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    text_model = AutoModelForCausalLM.from_pretrained(base_path, dtype="float32")
    model, processor = llava_from_text_model(text_model, tokenizer, DEMO_VISION, seed=0)
    model.config._name_or_path = "embedded:smollm2-tiny-llava"
    model.save_pretrained(target)
    processor.save_pretrained(target)
