"""mDPO's collator: TRL's vision preference collator with a third row block, the chosen answer given a corrupted image
(docs/methods/mdpo.md). Used by :class:`~trl_plugins.trainers.mdpo.trainer.MDPOTrainer` and by the held-out image margin
in ``trl_plugins/evaluation/heldout.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from trl.data_utils import apply_chat_template, is_conversational, prepare_multimodal_messages
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.utils import flush_left, pad

from ...models.vision import corrupt_image, open_image


@dataclass
class DataCollatorForMDPO(DataCollatorForVisionPreference):
    """TRL's vision preference collator with a third block: rows are ``[chosen | rejected | chosen-corrupted]``, each
    of ``B`` rows; the third block repeats the chosen text with every image corrupted by :func:`corrupt_image`.

    Corruptions are drawn from ``numpy.random.default_rng([seed, worker_id + 1000 * process_index, batch_index])``:
    a run with the same seed, data order and number of processes sees the same corrupted images, and neither
    dataloader workers nor processes repeat each other's."""

    corruption: str = "crop"
    crop_scale: tuple[float, float] = (0.01, 0.2)
    seed: int = 0
    _calls: int = 0

    def corrupt(self, images: list[Image.Image], rng: np.random.Generator) -> list[Image.Image]:
        return [corrupt_image(image, self.corruption, rng, tuple(self.crop_scale)) for image in images]

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.pad_to_multiple_of is not None:
            raise NotImplementedError("pad_to_multiple_of is not supported for vision-language data")
        worker = torch.utils.data.get_worker_info()
        process = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, (worker.id if worker else 0) + 1000 * process, self._calls])
        self._calls += 1
        examples = [dict(example) for example in examples]
        for example in examples:
            if "image" in example:
                example["images"] = [example.pop("image")]
            example["images"] = [open_image(image) for image in example["images"] or []]
        originals = [example["images"] for example in examples]
        corrupted = [self.corrupt(images, rng) for images in originals]
        images = originals * 2 + corrupted
        if all(not image_list for image_list in images):
            images = None
        if is_conversational(examples[0]):
            for example in examples:
                example["prompt"] = prepare_multimodal_messages(example["prompt"], images=example["images"])
                example["chosen"] = prepare_multimodal_messages(example["chosen"])
                example["rejected"] = prepare_multimodal_messages(example["rejected"])
            examples = [apply_chat_template(example, self.processor) for example in examples]

        prompts = [example["prompt"] for example in examples] * 3
        chosens = [example["chosen"] for example in examples]
        rejecteds = [example["rejected"] for example in examples]
        text_kwargs = dict(padding=True, padding_side="right", return_tensors=self.return_tensors,
                           add_special_tokens=False)
        processed_prompts = self.processor(images=images, text=prompts, padding=True, padding_side="left",
                                           return_tensors=self.return_tensors, add_special_tokens=False)
        processed_chosens = self.processor(text=chosens, **text_kwargs)
        processed_rejecteds = self.processor(text=rejecteds, **text_kwargs)

        prompt_ids, prompt_mask = processed_prompts["input_ids"], processed_prompts["attention_mask"]
        chosen_ids, chosen_mask = processed_chosens["input_ids"], processed_chosens["attention_mask"]
        rejected_ids, rejected_mask = processed_rejecteds["input_ids"], processed_rejecteds["attention_mask"]
        pad_token_id = self.processor.tokenizer.pad_token_id or self.processor.tokenizer.eos_token_id
        completion_ids = torch.cat(tuple(pad([chosen_ids, rejected_ids, chosen_ids], padding_value=pad_token_id)))
        completion_mask = torch.cat(tuple(pad([chosen_mask, rejected_mask, chosen_mask], padding_value=0)))
        input_ids = torch.cat((prompt_ids, completion_ids), dim=1)
        attention_mask = torch.cat((prompt_mask, completion_mask), dim=1)
        completion_mask = torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1)
        extra = {}
        if "token_type_ids" in processed_prompts:  # Gemma
            types = [processed_chosens["token_type_ids"], processed_rejecteds["token_type_ids"],
                     processed_chosens["token_type_ids"]]
            extra["token_type_ids"] = torch.cat(
                (processed_prompts["token_type_ids"], torch.cat(tuple(pad(types, padding_value=0)))), dim=1
            )
        if "mm_token_type_ids" in processed_prompts:  # Qwen2.5-VL
            extra["mm_token_type_ids"] = torch.cat(
                (processed_prompts["mm_token_type_ids"], torch.zeros_like(completion_ids)), dim=1
            )
        names = list(extra)
        flushed = flush_left(attention_mask, input_ids, completion_mask, *extra.values())
        attention_mask, input_ids, completion_mask = flushed[:3]
        extra = dict(zip(names, flushed[3:]))
        if self.max_length is not None:
            input_ids, attention_mask, completion_mask = (
                t[:, : self.max_length] for t in (input_ids, attention_mask, completion_mask)
            )
            extra = {k: v[:, : self.max_length] for k, v in extra.items()}
        output = processed_prompts  # holds pixel_values (and image_grid_thw, ...) of all 3·B rows
        output.update(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask, **extra)
        return output


