def length_reward(prompts, completions, **columns):
    texts = [c if isinstance(c, str) else " ".join(m["content"] for m in c) for c in completions]
    return [len(t.split()) / 10 for t in texts]
