"""Issue 17.7: ``reward=authors_masking`` (keywords from the prompt) applies at evaluation time too, and a reference
given as a loaded Perspective reaches the reward as its raw line."""
from __future__ import annotations

from fake_encoder import FakeEncoder, unit

from opgrpo.benchmark import Perspective
from opgrpo.reward import RewardConfig, score_completions, score_responses

SITUATION = "Lying to a friend"
REF = "In the perspective of Honesty, lying to a friend erodes trust."
SENT = "In the perspective of Honesty, an honest analysis of lying to a friend shows trust erodes."
RESPONSE = f"<core perspectives>\n{SENT}\n</core perspectives>\n\n<summary>\nHonesty matters.\n</summary>"
# implicit prompt "Provide a structured comprehensive analysis and your opinions on this topic: Lying to a friend":
# keywords provide, structured, comprehensive, analysis, opinions, topic, lying, friend -> "analysis" is masked too
PROMPT_MASKED = "In the perspective of Honesty an honest [KW] of [KW] to a [KW] shows trust erodes"
SITUATION_MASKED = "In the perspective of Honesty an honest analysis of [KW] to a [KW] shows trust erodes"
AUTHORS = RewardConfig(masking="prompt")


def _encoder() -> FakeEncoder:
    return FakeEncoder({REF: unit((0, 1.0)), PROMPT_MASKED: unit((0, 1.0))})


def test_prompt_masking_at_eval_time_uses_the_implicit_prompt():
    enc = _encoder()
    (out,) = score_responses([SITUATION], [RESPONSE], [[REF]], enc, AUTHORS)
    assert not out["no_prompt"]
    assert out["coverage"] == 5.0 and out["coverage_rate"] == 1.0  # the one reference matched
    assert PROMPT_MASKED in [s for call in enc.calls for s in call]


def test_without_prompts_the_old_eval_path_scored_zero():
    # what evaluation.run.reward_means did before: no prompts -> every item a bad "no_prompt", coverage 0
    (old,) = score_completions([SITUATION], [RESPONSE], [[REF]], _encoder(), AUTHORS)
    assert old["no_prompt"] and old["coverage"] == 0.0 and old["uniqueness"] == 0.0


def test_situation_masking_is_unchanged_by_the_eval_helper():
    enc = _encoder()
    (out,) = score_responses([SITUATION], [RESPONSE], [[REF]], enc, RewardConfig(masking="situation"))
    assert out["coverage"] == 0.0 and SITUATION_MASKED in [s for call in enc.calls for s in call]


class _Tokenizer:
    """Renders a chat the way a template does: role markers plus a system line."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        body = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return "<|system|>\nYou are a shows assistant.\n" + body + ("<|assistant|>\n" if add_generation_prompt else "")


def test_prompt_masking_with_a_tokenizer_reads_the_rendered_template():
    enc = _encoder()
    score_responses([SITUATION], [RESPONSE], [[REF]], enc, AUTHORS, tokenizer=_Tokenizer())
    # template words join the keywords: "shows" (system line) and "assistant"/"system"/"user" (markers)
    assert "In the perspective of Honesty an honest [KW] of [KW] to a [KW] [KW] trust erodes" in [
        s for call in enc.calls for s in call]


def test_explicit_prompt_kind_gives_its_own_keywords():
    enc = FakeEncoder()
    score_responses([SITUATION], [RESPONSE], [[REF]], enc, AUTHORS, prompt="explicit")
    encoded = [s for call in enc.calls for s in call]
    # the explicit prompt asks for perspectives: "perspective" is a keyword there, and "analysis" too
    assert any(s.startswith("In the [KW] of Honesty") for s in encoded), encoded


def test_a_loaded_perspective_reaches_the_reward_as_its_raw_line():
    raw = "In the perspective of Good vs. Evil, lying to the robber protects the innocent."
    enc = FakeEncoder()
    score_completions([SITUATION], [RESPONSE], [[Perspective("Good vs. Evil", "lying to the robber protects the "
                                                                  "innocent.", raw=raw)]], enc, RewardConfig())
    assert raw in [s for call in enc.calls for s in call]
