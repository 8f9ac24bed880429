"""Paper records for the model cards TRL writes (a trainer's ``_paper``): every paper of this package, once."""

from __future__ import annotations

import textwrap


def _paper(title: str, arxiv_id: str, key: str, authors: str, year: int, venue: str = "") -> dict:
    entry = "inproceedings" if venue else "article"
    venue_line = f"    booktitle    = {{{venue}}},\n" if venue else ""
    return {
        "title": title,
        "id": arxiv_id,
        "citation": textwrap.dedent(f"""\
            @{entry}{{{key},
                title        = {{{{{title}}}}},
                author       = {{{authors}}},
                year         = {year},
            """) + venue_line + f"    eprint       = {{arXiv:{arxiv_id}}}\n}}",
    }


LLAMA2 = _paper("Llama 2: Open Foundation and Fine-Tuned Chat Models", "2307.09288", "touvron2023llama2",
                "Hugo Touvron and Louis Martin and Kevin Stone and others", 2023)
ORPO = _paper("ORPO: Monolithic Preference Optimization without Reference Model", "2403.07691", "hong2024orpo",
              "Jiwoo Hong and Noah Lee and James Thorne", 2024)
MDPO = _paper("mDPO: Conditional Preference Optimization for Multimodal Large Language Models", "2406.11839",
              "wang2024mdpo", "Fei Wang and Wenxuan Zhou and James Y. Huang and Nan Xu and Sheng Zhang and "
              "Hoifung Poon and Muhao Chen", 2024, venue="EMNLP")
RAFT = _paper("RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment", "2304.06767",
              "dong2023raft", "Hanze Dong and Wei Xiong and Deepanshu Goyal and Yihan Zhang and Winnie Chow and Rui Pan "
              "and Shizhe Diao and Jipeng Zhang and Kashun Shum and Tong Zhang", 2023)
REST = _paper("Reinforced Self-Training (ReST) for Language Modeling", "2308.08998", "gulcehre2023rest",
              "Caglar Gulcehre and Tom Le Paine and Srivatsan Srinivasan and others", 2023)
REST_EM = _paper("Beyond Human Data: Scaling Self-Training for Problem-Solving with Language Models", "2312.06585",
                 "singh2023beyond", "Avi Singh and John D. Co-Reyes and Rishabh Agarwal and others", 2023)
ITERATIVE_DPO = _paper("Iterative Preference Learning from Human Feedback: Bridging Theory and Practice for RLHF under "
                       "KL-Constraint", "2312.11456", "xiong2024iterative",
                       "Wei Xiong and Hanze Dong and Chenlu Ye and others", 2024, venue="ICML")
IRPO = _paper("Iterative Reasoning Preference Optimization", "2404.19733", "pang2024iterative",
              "Richard Yuanzhe Pang and Weizhe Yuan and Kyunghyun Cho and He He and Sainbayar Sukhbaatar and "
              "Jason Weston", 2024, venue="NeurIPS")
