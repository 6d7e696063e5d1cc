"""A reward a tiny random policy can learn in a few GRPO steps (``reward.extra_funcs=[learn_rewards:e_share]`` with
``tests/`` on PYTHONPATH): the share of a completion's characters that are the letter "e". Random tokens give it a
spread within every group (a real advantage), and raising it only needs the output layer to favour a large subset of
the vocabulary, so the learning test can see the mean reward rise within ~20 steps."""
from __future__ import annotations


def e_share(completions, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else str(c) for c in completions]
    return [t.lower().count("e") / max(1, len(t)) for t in texts]
