"""Text layer of the reward: splitting, names, reference lines, layouts, keyword masking."""
from opgrpo.text.perspectives import (
    STOPWORDS,
    Layout,
    has_perspective_phrase,
    lenient_blocks,
    mask_keywords,
    parse_reference,
    parse_strict_layout,
    perspective_name,
    situation_keywords,
    split_perspective_sentences,
)


def test_stopwords_are_nltks_179():
    assert len(STOPWORDS) == 179
    for w in ("i", "me", "wouldn", "wouldn't", "should've", "that'll", "ma", "ain", "the", "no"):
        assert w in STOPWORDS
    assert "would" not in STOPWORDS and "could" not in STOPWORDS


def test_split_before_each_perspective_line():
    text = (
        "Intro line.\nIn the perspective of A, a.\n  \nfrom THE perspective of B, b\nmore of b.\n"
        "In the perspective of C, c. In the perspective of D, same line."
    )
    assert split_perspective_sentences(text) == [
        "Intro line.",
        "In the perspective of A, a.",
        "from THE perspective of B, b\nmore of b.",
        "In the perspective of C, c. In the perspective of D, same line.",
    ]


def test_split_edge_cases():
    assert split_perspective_sentences("") == []
    assert split_perspective_sentences("   \n ") == []
    assert split_perspective_sentences("no phrase here") == ["no phrase here"]
    # a line indented before the phrase is not a split point (regex needs the phrase right after \n)
    assert split_perspective_sentences("x\n In the perspective of A, a") == ["x\n In the perspective of A, a"]
    # the text's very start counts as a line start
    assert split_perspective_sentences("In the perspective of A, a\nIn the perspective of B, b") == [
        "In the perspective of A, a",
        "In the perspective of B, b",
    ]


def test_perspective_name():
    assert perspective_name("In the perspective of  Duty to Oneself , x") == "duty to oneself"
    assert perspective_name("Also, from the perspective of Honesty. More") == "honesty"
    assert perspective_name("Within the perspective of X, y") is None  # needs ^ or whitespace before From/In
    assert perspective_name("nothing") is None
    assert has_perspective_phrase("so in the perspective of Care\nnext")
    assert perspective_name("so in the perspective of Care\nnext") == "care"
    assert not has_perspective_phrase("In the perspective of , x")


def test_parse_reference():
    assert parse_reference("In the perspective of Honesty, lying is wrong, mostly.") == (
        "Honesty",
        "lying is wrong, mostly.",
    )
    assert parse_reference("  - In the perspective of Duty to oneself,  rest ") == ("Duty to oneself", "rest")
    assert parse_reference("In the perspective of Care. It matters") == ("Care", "It matters")
    assert parse_reference("  plain explanation  ") == (None, "plain explanation")


def test_strict_layout():
    ok = "\n <CORE   Perspectives>\nIn the perspective of A, a\n</core\nperspectives>\n\n<summary> S </summary>\n"
    assert parse_strict_layout(ok) == Layout(True, "In the perspective of A, a", "S")
    assert parse_strict_layout("<core perspectives>x</core perspectives><summary>  </summary>").strict is False
    assert parse_strict_layout("<core perspectives> </core perspectives><summary>s</summary>").strict is False
    bad = "pre <core perspectives>x</core perspectives><summary>s</summary>"
    assert parse_strict_layout(bad) == Layout(False, bad.strip(), None)
    assert parse_strict_layout("<core perspectives>x</core perspectives><summary>s</summary> tail").strict is False
    assert parse_strict_layout("<coreperspectives>x</coreperspectives><summary>s</summary>").strict is False


def test_lenient_blocks():
    r = "junk <Core Perspectives> c1 </core perspectives> <core perspectives>c2</core perspectives> <summary>s</summary>x"
    assert lenient_blocks(r) == ("c1", "s")
    assert lenient_blocks("  only text ") == ("only text", "only text")
    assert lenient_blocks("<summary> s </summary> rest") == ("<summary> s </summary> rest", "s")


def test_keywords_and_masking():
    kw = situation_keywords("Is it OK to lie to my friend_x about the Party's cost?")
    assert kw == {"ok", "lie", "party", "cost"}  # friend_x is not alnum; "s", "to", "my" are stopwords
    assert mask_keywords("In the perspective of Honesty, lying about a party's COST is bad!", kw) == (
        "In the perspective of Honesty lying about a [KW] s [KW] is bad"
    )
    assert mask_keywords("Keep, it. as is!", set()) == "Keep, it. as is!"
    assert mask_keywords("", {"x"}) == ""
