"""Shared test helpers (plain functions and constants; fixtures are in conftest.py)."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from opgrpo.benchmark import Item, Perspective


def make_items(n: int = 8) -> list[Item]:
    names = ["Honesty", "Duty to oneself", "Care for others", "Autonomy"]
    return [
        Item(
            id=f"it{i}",
            situation=f"Telling a white lie to friend number {i} about a gift",
            perspectives=[Perspective(name, f"item it{i} shows why {name.lower()} matters.") for name in names[: 2 + i % 3]],
            source=f"test:{i}",
        )
        for i in range(n)
    ]


def completion_length(prompts, completions, **kw):
    return [len(c[0]["content"]) / 50.0 for c in completions]


TINY = dict(num_generations=2, prompts_per_step=2, mini_batch_size=1, per_device_train_batch_size=2,
            max_completion_length=8, max_prompt_length=256)
# what the tiny runs keep of the paper preset (conf/trainer/paper.yaml) where it differs from TRL's defaults
TINY_TRL = dict(logging_steps=1, activation_checkpointing=False, beta=0.001, use_bias_correction_kl=False,
                lr_scheduler_type="constant", save_steps=50, save_total_limit=2)


def with_trl(cls, **values):
    """``cls`` (GRPOSettings or SFTSettings) with ``values``: its own fields by name, every other key a field of TRL's
    config (into ``trl``, by TRL's name)."""
    import dataclasses

    own = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in own}, trl={k: v for k, v in values.items() if k not in own})


def tiny_grpo(**values):
    """GRPOSettings of ``TINY`` changed by ``values`` (``with_trl``)."""
    from opgrpo.training.grpo import GRPOSettings

    return with_trl(GRPOSettings, **{**TINY_TRL, **TINY, **values})


def sft_settings(**values):
    """SFTSettings with ``values`` (``with_trl``), logging every step, no activation checkpointing."""
    from opgrpo.training.sft import SFTSettings

    return with_trl(SFTSettings, **{"logging_steps": 1, "activation_checkpointing": False, **values})


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet ``http.server`` handler for test endpoints, with ``_send(code, obj, headers)`` writing a JSON body (a
    client that timed out and left is not an error)."""

    def log_message(self, *args):
        pass

    def _send(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
