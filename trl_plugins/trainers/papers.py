"""Paper records for the model cards TRL writes (``_paper`` of a trainer), one per paper shared by several trainers."""

from __future__ import annotations

import textwrap

LLAMA2 = {
    "title": "Llama 2: Open Foundation and Fine-Tuned Chat Models",
    "id": "2307.09288",
    "citation": textwrap.dedent("""\
        @article{touvron2023llama2,
            title        = {{Llama 2: Open Foundation and Fine-Tuned Chat Models}},
            author       = {Hugo Touvron and Louis Martin and Kevin Stone and others},
            year         = 2023,
            eprint       = {arXiv:2307.09288}
        }"""),
}
