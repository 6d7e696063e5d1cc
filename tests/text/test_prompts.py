"""Issue 17.4: the explicit baseline prompt is the authors' ``wrap_prompt`` (data_preprocess/valueprism_ex.py) word for
word; the expected text below is copied verbatim from that file (regression: the project had its own wording)."""
from opgrpo.text.prompts import EXPLICIT_TEMPLATE, chat_prompt, prompt_text

# copied from fuyu12345/OPRL-LLM data_preprocess/valueprism_ex.py, wrap_prompt(original), original = "Eating meat"
AUTHORS_EXPLICIT = (
    "Provide a structured multi-perspectives analysis within 450 words on this topic: Eating meat\n"
    "Make sure each sentence you write can represent one perspective from your analysis.\n"
    "   Output Format Example:\n"
    "   You may have many sentences for different perspectives. Make sure each of sentence follow this format: "
    "In the perspective of <Perspective name>, <your explanation to this aspect>\n"
)


def test_explicit_prompt_is_the_authors_wrap_prompt_verbatim():
    assert prompt_text("Eating meat", "explicit") == AUTHORS_EXPLICIT
    assert prompt_text("  Eating meat \n", "explicit") == AUTHORS_EXPLICIT  # the situation is stripped, as elsewhere
    assert EXPLICIT_TEMPLATE.format(situation="Eating meat") == AUTHORS_EXPLICIT
    assert chat_prompt("Eating meat", "explicit") == [{"role": "user", "content": AUTHORS_EXPLICIT}]


def test_implicit_prompt_is_unchanged():
    assert prompt_text("Eating meat") == ("Provide a structured comprehensive analysis and your opinions on this topic: "
                                          "Eating meat\n\n")
