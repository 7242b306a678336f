"""Retrieval baselines: BM25 shots from the training split (never a held-out row) and passages of real
.md, .html, .pdf and .jsonl documents, chunked with their headings and cited by id."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fpdf import FPDF

from jupyter_finetune.data.documents import Passage, read_documents
from jupyter_finetune.data.formats import Example
from jupyter_finetune.errors import InvalidValue, NotFound
from jupyter_finetune.evaluation.retrieval import (Bm25, nearest_examples, prompt_text, rag_prompt,
                                                   retrieve_passages)

SYSTEM = {"role": "system", "content": "You answer password and refund questions for the shop."}


def example(row: int, question: str, answer: str = "ok") -> Example:
    return Example(row, [SYSTEM, {"role": "user", "content": question}, {"role": "assistant", "content": answer}])


TRAIN = [
    example(1, "How long do refunds take?"),
    example(2, "Can I get a refund for a damaged order?"),
    example(3, "Where is my parcel? Tracking shows no update."),
    example(4, "How do I reset my password?"),
    example(5, "The printer on floor three is jammed."),
    example(6, "My invoice shows the wrong amount."),
    example(7, "Do you ship to Canada?"),
    example(8, "I forgot my password and cannot log in."),
]
FORGOTTEN = example(20, "Reset a forgotten password?")


def write_pdf(path: Path, pages: list[str | None], user_password: str | None = None) -> Path:
    """A real PDF with one page per text (None: a page with only a drawing, as a scan has no text layer)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text is None:
            pdf.rect(20, 20, 80, 60, style="F")
        else:
            pdf.multi_cell(0, 8, text)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    pdf.output(str(path))
    return path


FAQ = """Intro line before any heading.

# Refunds

Refunds are issued within 30 days of purchase.

Keep your receipt.

## Shipping ##
We ship to Canada and Mexico.

```python
# a comment, not a heading
```
"""
POLICY = """<html><head><title>Store policy</title><style>.x { color: red }</style>
<script>var secret = "tracking-pixel";</script></head>
<body><nav>Home | Shop | Contact</nav>
<h1>Store policy</h1><p>Our shop is open <b>Monday</b> to Friday.</p>
<h2>Warranty</h2><p>Every kettle has a two-year warranty.<br>Keep the box.</p><ul><li>Kettles</li><li>Toasters</li></ul>
<script>document.write("injected")</script><footer>Copyright 2024</footer></body></html>"""
MANUAL = ["The kettle boils water in three minutes.", "Descale the kettle every month with vinegar."]


@pytest.fixture
def docs_folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".ipynb_checkpoints").mkdir()
    (root / "faq.md").write_text(FAQ)
    (root / "policy.html").write_text(POLICY)
    write_pdf(root / "manual.pdf", MANUAL)
    (root / "sub" / "notes.txt").write_text("Gift cards never expire.\n")
    (root / ".ipynb_checkpoints" / "faq-checkpoint.md").write_text("# Refunds\n\nA stale copy.\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    return root


def texts(path: Path, **sizes: int) -> dict[str, str]:
    return {p.id: p.text for p in read_documents(path, **sizes).passages}


# BM25


def test_bm25_scores_by_hand_best_first_ties_to_the_lower_index():
    index = Bm25(["the cat sat", "dog barks loudly", "cat and dog", ""])
    assert [i for i, _ in index.top("cat", 5)] == [0, 2]  # equal scores: the lower index first
    assert index.top("cat", 5, exclude={0}) == index.top("cat", 5)[1:]
    # one text, one word: idf ln(1 + (1 - 1 + 0.5) / (1 + 0.5)), tf 1 / (k1 1.5 * (1 - b + b * 1) + 1)
    assert Bm25(["only one"]).top("one", 10) == [(0, pytest.approx(math.log(4 / 3) / 2.5, rel=1e-6))]


def test_bm25_gives_nothing_for_empty_or_stopword_queries_and_corpora():
    index = Bm25(["the cat sat"])
    assert index.top("", 3) == [] and index.top("the and of", 3) == [] and index.top("zebra", 3) == []
    assert Bm25([]).top("cat", 2) == [] and Bm25(["the a", ""]).top("the", 2) == []
    assert index.top("cat", 0) == []


# Shots by similarity


def test_prompt_text_is_the_prompt_without_system_prompt_or_answer():
    assert prompt_text(example(1, "Where is my parcel?", "On its way.")) == "Where is my parcel?"


def test_nearest_examples_pick_the_obvious_neighbours_most_similar_last():
    # "reset" and "password" match row 4, "password" alone row 8, and no other row shares a word ("a" is too
    # short to be one); the system prompt, which mentions passwords, is not compared
    assert [[s.row for s in shots] for shots in nearest_examples(TRAIN, [FORGOTTEN], 2)] == [[8, 4]]
    refund = example(21, "How long until refunds for a damaged order?")
    (shots,) = nearest_examples(TRAIN, [refund], 2)
    assert {s.row for s in shots} == {1, 2}


def test_nearest_examples_never_return_the_held_out_row():
    same_row = example(20, "Password reset link expired, reset password again?")  # the held-out row's number
    duplicate = example(9, "reset a   FORGOTTEN Password?")  # its prompt, in other case and spacing
    (shots,) = nearest_examples([*TRAIN, same_row, duplicate], [FORGOTTEN], 3)
    assert len(shots) == 3 and same_row not in shots and duplicate not in shots
    assert [s.row for s in shots[1:]] == [8, 4]


def test_nearest_examples_fill_up_in_a_seeded_order_when_few_match():
    unrelated = [example(30, "Zebra xylophone quartz?"), example(31, "Walrus banjo?")]
    first, second = nearest_examples(TRAIN, unrelated, 3)
    assert len(first) == 3 and first == second == nearest_examples(TRAIN, unrelated[:1], 3)[0]
    (shots,) = nearest_examples(TRAIN, [example(32, "Zebra xylophone for Canada?")], 3)
    assert shots[-1].row == 7 and len({s.row for s in shots}) == 3  # the one match last, two fillers before


def test_nearest_examples_refuse_more_shots_than_training_rows():
    with pytest.raises(InvalidValue, match="--shots 9 but the training split has only 8 rows"):
        nearest_examples(TRAIN, [FORGOTTEN], 9)


# Documents


def test_markdown_chunks_start_with_their_heading_and_never_span_sections(tmp_path):
    (tmp_path / "faq.md").write_text(FAQ)
    assert texts(tmp_path / "faq.md") == {
        "faq.md#1": "Intro line before any heading.",
        "faq.md#2": "Refunds: Refunds are issued within 30 days of purchase. Keep your receipt.",
        "faq.md#3": "Shipping: We ship to Canada and Mexico. # a comment, not a heading",
    }


def test_a_long_paragraph_is_cut_at_sentences_with_overlap(tmp_path):
    (tmp_path / "numbers.md").write_text(
        "# Count\n\nOne two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen. "
        "Sixteen seventeen eighteen nineteen twenty.\n\nA short paragraph after it.\n")
    assert texts(tmp_path / "numbers.md", chunk_words=12, overlap_words=3) == {
        "numbers.md#1": "Count: One two three four five. Six seven eight nine ten.",
        "numbers.md#2": "Count: eight nine ten. Eleven twelve thirteen fourteen fifteen.",
        "numbers.md#3": "Count: thirteen fourteen fifteen. Sixteen seventeen eighteen nineteen twenty.",
        "numbers.md#4": "Count: A short paragraph after it.",
    }


def test_html_drops_scripts_styles_menus_and_footers_and_keeps_headings(tmp_path):
    (tmp_path / "policy.html").write_text(POLICY)
    assert texts(tmp_path / "policy.html") == {
        "policy.html#1": "Store policy: Our shop is open Monday to Friday.",
        "policy.html#2": "Warranty: Every kettle has a two-year warranty. Keep the box. Kettles Toasters",
    }


def test_pdf_passages_carry_their_page(tmp_path):
    write_pdf(tmp_path / "manual.pdf", MANUAL)
    docs = read_documents(tmp_path / "manual.pdf")
    assert {p.id: p.text for p in docs.passages} == {"manual.pdf p.1#1": MANUAL[0], "manual.pdf p.2#1": MANUAL[1]}
    assert {p.source for p in docs.passages} == {"manual.pdf"} and docs.files == 1


def test_folder_is_read_recursively_in_sorted_order_without_hidden_or_other_files(docs_folder):
    docs = read_documents(docs_folder)
    assert [p.id for p in docs.passages] == ["faq.md#1", "faq.md#2", "faq.md#3", "manual.pdf p.1#1",
                                             "manual.pdf p.2#1", "policy.html#1", "policy.html#2", "sub/notes.txt#1"]
    assert docs.files == 4 and docs.root == str(docs_folder) and docs.passages[-1].source == "sub/notes.txt"
    assert "stale" not in " ".join(p.text for p in docs.passages)


def test_version_changes_only_when_the_passages_do(docs_folder):
    version = read_documents(docs_folder).version
    assert read_documents(str(docs_folder)).version == version and len(version) == 12
    (docs_folder / "sub" / "notes.txt").write_text("Gift cards expire after a year.\n")
    assert read_documents(docs_folder).version != version


def test_jsonl_passages_keep_their_ids_and_sources_and_long_rows_are_cut(tmp_path):
    rows = [{"text": "Kettles have a two-year warranty.", "id": "kb-1", "source": "kb"}, "",
            {"text": "Toasters  have\n a one-year warranty.", "title": "Toaster guide"},
            {"text": " ".join(f"w{i}" for i in range(1, 21))}]
    (tmp_path / "passages.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    docs = read_documents(tmp_path / "passages.jsonl", chunk_words=12, overlap_words=2)
    assert [(p.id, p.source, p.text) for p in docs.passages] == [
        ("kb-1", "kb", "Kettles have a two-year warranty."),
        ("passages.jsonl:3", "Toaster guide", "Toasters have a one-year warranty."),  # line 3: blank lines count
        ("passages.jsonl:4#1", "passages.jsonl", " ".join(f"w{i}" for i in range(1, 11))),
        ("passages.jsonl:4#2", "passages.jsonl", " ".join(f"w{i}" for i in range(9, 21))),
    ]


# Retrieving passages and the prompt that quotes them


def test_a_question_about_an_html_fact_ranks_its_chunk_first(docs_folder):
    docs = read_documents(docs_folder)
    rows = [example(1, "How long is the warranty on a kettle?"), example(2, "How often should I descale it?"),
            example(3, "Zebra?")]
    found = retrieve_passages(docs, rows, 2)
    assert found[0][0].id == "policy.html#2" and [p.id for p in found[1]] == ["manual.pdf p.2#1"]
    assert found[2] == [] and all(len(f) <= 2 for f in found)


def test_rag_prompt_quotes_cited_passages_before_the_question_and_keeps_the_system_prompt():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long is the warranty?"}]
    passages = [Passage("policy.html#2", "policy.html", "Warranty: two years."), Passage("faq.md#1", "faq.md", "Hi.")]
    assert rag_prompt(prompt, passages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Answer using these passages where they help.\n\n[policy.html#2] Warranty: two "
                                    "years.\n\n[faq.md#1] Hi.\n\nQuestion: How long is the warranty?"}]
    assert prompt[1]["content"] == "How long is the warranty?" and rag_prompt(prompt, []) == prompt


# Errors name the path or row and the fix


def test_missing_path_says_what_to_give(tmp_path):
    with pytest.raises(NotFound, match=r"nowhere: no such file or folder — give a folder of \.md, "):
        read_documents(tmp_path / "nowhere")


def test_folder_without_documents_lists_the_suffixes_accepted(tmp_path):
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    with pytest.raises(InvalidValue, match=r"no documents in this folder — it needs \.md, \.markdown, \.txt, "
                                           r"\.html, \.htm, \.pdf files \(folders are read recursively\)"):
        read_documents(tmp_path)
    (tmp_path / "empty.md").write_text("\n\n")
    with pytest.raises(InvalidValue, match="the documents hold no text"):
        read_documents(tmp_path)


def test_unsupported_file_names_its_type(tmp_path):
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with pytest.raises(InvalidValue, match=r"notes.docx: unsupported file type '\.docx'"):
        read_documents(tmp_path / "notes.docx")


def test_scanned_pdf_asks_for_ocr(tmp_path):
    write_pdf(tmp_path / "scan.pdf", [None])
    with pytest.raises(InvalidValue, match=r"scan.pdf: this PDF has no text layer \(scanned\?\) — run OCR first"):
        read_documents(tmp_path)


def test_encrypted_and_damaged_pdfs_say_so(tmp_path):
    write_pdf(tmp_path / "locked.pdf", ["Secret plans."], user_password="pw")
    with pytest.raises(InvalidValue, match="locked.pdf: an encrypted PDF — save a copy without the password"):
        read_documents(tmp_path / "locked.pdf")
    write_pdf(tmp_path / "open.pdf", ["Open plans."], user_password="")  # encrypted, but opens without one
    assert texts(tmp_path / "open.pdf") == {"open.pdf p.1#1": "Open plans."}
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(InvalidValue, match="broken.pdf: cannot read this PDF"):
        read_documents(tmp_path / "broken.pdf")


def test_bad_jsonl_rows_are_named_by_number(tmp_path):
    path = tmp_path / "passages.jsonl"
    path.write_text('{"text": "fine"}\n[1, 2]\n{"title": "no text"}\n{bad json\n{"text": "  "}\n')
    with pytest.raises(InvalidValue) as raised:
        read_documents(path)
    assert str(raised.value).startswith(
        f'{path}: row 2: not a JSON object; row 3: no "text" string; row 4: invalid JSON')
    assert str(raised.value).endswith(' (and 1 more) — each line must be an object with a "text" string, and '
                                      'optionally "id", "source", "title"')


def test_repeated_passage_ids_are_refused(tmp_path):
    path = tmp_path / "passages.jsonl"
    path.write_text('{"text": "a b", "id": "x"}\n{"text": "c d", "id": "x"}\n')
    with pytest.raises(InvalidValue, match="passage id 'x' is used more than once"):
        read_documents(path)


def test_chunk_sizes_are_checked():
    with pytest.raises(InvalidValue, match="0 <= overlap_words < chunk_words"):
        read_documents(".", chunk_words=10, overlap_words=10)
