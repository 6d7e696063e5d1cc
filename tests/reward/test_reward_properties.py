"""Property tests: arbitrary (hostile) completions never raise and every score stays in its range."""
import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opgrpo.reward import OPRewardScorer, RewardConfig, make_reward_functions

FRAGMENTS = [
    "<core perspectives>", "</core perspectives>", "<CORE  PERSPECTIVES>", "</Core\nPerspectives>", "<summary>",
    "</summary>", "<SUMMARY>", "\n", "\n\n", " ", ",", ".", "In the perspective of ", "from THE PERSPECTIVE OF ",
    "Honesty", "Care", "lying", "friend", "\x00", "\x1b[31m", "\ud800", "\udfff", "\u202e", "\r\n", "\t", "[KW]",
    "In the perspective of , x", "é", "😀", "\x85",
]

hostile_text = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(codec=None, categories=["L", "N", "P", "Z", "S", "Cc", "Cs"]), max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=40).map("".join),
)
completion = st.one_of(
    hostile_text,
    st.binary(max_size=100),
    st.integers(),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"]), "content": hostile_text}),
             max_size=3),
)
references = st.one_of(st.none(), hostile_text, st.lists(hostile_text, max_size=5))

BIG = "<core perspectives>" + "In the perspective of A, " + "a " * 50000 + "</core perspectives><summary>s</summary>"
NESTED = ("<core perspectives><core perspectives>In the perspective of A, a\n</core perspectives>"
          "</core perspectives><summary><summary>A</summary></summary>")
DUPLICATED = ("<core perspectives>In the perspective of A, a</core perspectives><summary>A</summary>"
              "<core perspectives>In the perspective of A, a</core perspectives><summary>A</summary>")


class HashEncoder:
    """Deterministic pseudo-random unit vectors (arbitrary similarities), no model needed."""

    def encode(self, sentences, normalize_embeddings=True, convert_to_numpy=True, **kwargs):
        out = []
        for s in sentences:
            seed = int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, 16), np.float32)


def check_ranges(results, cfg):
    w = cfg.weights
    upper = 5 * w.coverage + 1 * w.uniqueness + 2 * w.format
    for r in results:
        assert 0.0 <= r["coverage"] <= 5.0 and 0.0 <= r["uniqueness"] <= 1.0 and 0.0 <= r["format"] <= 2.0
        assert r["tag"] in (0.0, cfg.tag_penalty)
        assert 0.0 <= r["coverage_rate"] <= 1.0 and 0.0 <= r["uniqueness_rate"] <= 1.0
        assert cfg.clip_min <= r["total"] <= upper + 1e-9
        assert all(isinstance(r[k], float) for k in ("coverage", "uniqueness", "format", "tag", "total"))


SCORER = OPRewardScorer(HashEncoder(), RewardConfig(), log_examples=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(hostile_text, completion, references), min_size=1, max_size=6))
@example([(None, BIG, ["In the perspective of A, a"])])
@example([("s", NESTED, ["In the perspective of A, a"]), ("s", DUPLICATED, "In the perspective of A, a")])
@example([("lying", "\ud800" * 10 + "In the perspective of Care, \x00", [None, "\udfff"])])
def test_scorer_never_raises_and_stays_in_range(rows):
    situations, completions, refs = map(list, zip(*rows))
    results = SCORER.score(situations, completions, refs, prompts=situations)
    assert len(results) == len(rows)
    check_ranges(results, SCORER.config)


@settings(max_examples=60, deadline=None)
@given(st.lists(completion, min_size=1, max_size=4), st.sampled_from(["situation", "prompt", "none"]),
       st.sampled_from(["bucketed", "continuous"]))
def test_trl_callables_never_raise(completions, masking, mode):
    cfg = RewardConfig(masking=masking, mode=mode, max_completion_chars=500)
    funcs = make_reward_functions(HashEncoder(), cfg)
    n = len(completions)
    cols = {"prompts": [[{"role": "user", "content": "lying?"}]] * n, "completions": completions,
                "situation": ["Is lying OK?"] * n, "references": [["In the perspective of A, a"]] * n}
    values = [f(**cols) for f in funcs]
    assert all(len(v) == n and all(isinstance(x, float) and np.isfinite(x) for x in v) for v in values)


def test_big_and_nested_examples_have_expected_scores():
    cfg = RewardConfig()
    big, nested, dup = SCORER.score(None, [BIG, NESTED, DUPLICATED], [["In the perspective of A, a"]] * 3)
    assert big["truncated"] and big["tag"] == -0.2  # truncation removed the closing tags
    # nested: the strict regex still matches the whole text (core ends at the last possible closing tag)
    assert nested["strict_layout"] and nested["tag"] == 0.0
    # duplicated blocks: the summary text may hold tags, so the regex still spans the whole text
    assert dup["strict_layout"] and dup["tag"] == 0.0 and dup["n_candidates"] == 1
    assert SCORER.score(None, [DUPLICATED + " tail"], [None])[0]["tag"] == cfg.tag_penalty


@pytest.mark.parametrize("text", [None, "", BIG, NESTED, "\ud800\x00<summary>", "In the perspective of 😀, é"])
def test_real_tokenizer_survives_hostile_text(minilm, text):
    results = OPRewardScorer(minilm, RewardConfig()).score(["Is lying OK?"], [text], [["In the perspective of A, a"]])
    check_ranges(results, RewardConfig())
