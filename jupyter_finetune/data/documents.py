"""Documents that ground answers (``%ft_eval --docs``): a folder, a file or a JSONL of passages, cut into chunks.

A chunk is small (about ``chunk_words`` words, 120 by default) because a small model's context is short and
every retrieved word costs a token in every prompt; it never spans two sections, and it starts with its
section's heading, so a chunk read alone still says what it is about. Each chunk has a short id a reader can
cite and find again: ``faq.md#2`` (the second chunk of faq.md), ``manual.pdf p.3#1`` (the first chunk of page
3), ``passages.jsonl:7`` (line 7). Files are read in sorted order, so the same documents give the same ids.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidValue, NotFound, reworded
from .readers import RawRow, decoded_text, read_path

MARKDOWN = (".md", ".markdown")
HTML = (".html", ".htm")
SUFFIXES = (*MARKDOWN, ".txt", *HTML, ".pdf")
ACCEPTED = f"{', '.join(SUFFIXES)} files (folders are read recursively), or a .jsonl of passages"
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)(?:\s+#+)?\s*$")
"""A markdown ATX heading: ``## Refunds`` (closing hashes dropped); ``#hashtag`` is text."""
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HTML_DROPPED = ["script", "style", "nav", "footer", "noscript", "template", "head"]
"""Code, menus and page furniture: text no answer comes from (the <title> usually repeats the <h1>)."""
_HTML_HEADINGS = ["h1", "h2", "h3", "h4"]
_HTML_BLOCKS = ["p", "div", "li", "ul", "ol", "dl", "dt", "dd", "pre", "blockquote", "section", "article",
                "aside", "main", "header", "table", "tr", "caption", "figure", "figcaption", "form", "fieldset",
                "address", "details", "summary", "hr", "h5", "h6"]
_MARK = "\ue000"
"""Marks a heading in the text BeautifulSoup gives back (a private-use character no page contains)."""

Block = tuple[bool, str]
"""(is a heading, its text): a file read as a sequence of headings and paragraphs."""


@dataclass(frozen=True)
class Passage:
    """One chunk of a document: what a prompt quotes and cites."""

    id: str
    """Unique and citable: ``faq.md#2``, ``manual.pdf p.3#1``, ``passages.jsonl:7`` (or the row's own "id")."""
    source: str
    """The file's path relative to the documents' root; for a JSONL row its "source" or "title", else the
    file name."""
    text: str
    """Whitespace-normalised; starts with the nearest heading when the file has headings."""


@dataclass(frozen=True)
class Documents:
    """Every passage of the documents at ``root``."""

    root: str
    """The path as given."""
    passages: tuple[Passage, ...]
    files: int
    """How many files were read (documents with no text included)."""
    version: str
    """A short hash of every id and text: answers saved against other documents are regenerated."""


def read_documents(path: str | Path, *, chunk_words: int = 120, overlap_words: int = 20) -> Documents:
    """The passages of a folder (recursive) or file of ``SUFFIXES``, or of a JSONL of passages.

    A JSONL row is an object with "text" and optional "id", "source", "title"; it is one passage unless it
    is longer than ``chunk_words``. Files with other suffixes, and hidden files and folders, are skipped.
    """
    if chunk_words < 1 or not 0 <= overlap_words < chunk_words:
        raise InvalidValue(f"chunks of {chunk_words} words overlapping by {overlap_words}: give chunk_words >= 1 "
                           "and 0 <= overlap_words < chunk_words")
    root = Path(path).expanduser()
    sizes = (chunk_words, overlap_words)
    if not root.exists():
        raise NotFound(f"{path}: no such file or folder — give a folder of {ACCEPTED}")
    if root.is_dir():
        files = _folder_files(root)
        if not files:
            raise InvalidValue(f"{path}: no documents in this folder — it needs {ACCEPTED}")
        passages = [p for f in files for p in _file_passages(f, f.relative_to(root).as_posix(), *sizes)]
    elif root.suffix.lower() == ".jsonl":
        files, passages = [root], _jsonl_passages(root, *sizes)
    elif root.suffix.lower() in SUFFIXES:
        files, passages = [root], _file_passages(root, root.name, *sizes)
    else:
        raise InvalidValue(f"{path}: unsupported file type {root.suffix!r} — give a folder of {ACCEPTED}")
    if not passages:
        raise InvalidValue(f"{path}: the documents hold no text — give {ACCEPTED} with text in them")
    repeated = [i for i, n in Counter(p.id for p in passages).items() if n > 1]
    if repeated:
        raise InvalidValue(f"{path}: passage id {repeated[0]!r} is used more than once — give each row its own "
                           '"id"')
    digest = hashlib.blake2b(digest_size=6)
    for passage in passages:
        digest.update(f"{passage.id}\0{passage.text}\0".encode())
    return Documents(str(path), tuple(passages), len(files), digest.hexdigest())


def _folder_files(root: Path) -> list[Path]:
    """The readable files under ``root``, by relative path; hidden ones (.git, .ipynb_checkpoints) left out."""
    with reworded(root, "cannot list it"):
        found = [p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _file_passages(file: Path, name: str, chunk_words: int, overlap_words: int) -> list[Passage]:
    suffix = file.suffix.lower()
    if suffix == ".pdf":
        return [Passage(f"{name} p.{page}#{n}", name, text)
                for page, page_text in enumerate(_pdf_pages(file), 1)
                for n, text in enumerate(_chunks(_paragraphs(page_text), chunk_words, overlap_words), 1)]
    if suffix in HTML:
        with reworded(file, "cannot read it"):
            data = file.read_bytes()
        blocks = _html_blocks(data)
    else:
        blocks = _text_blocks(decoded_text(file), markdown=suffix in MARKDOWN)
    return [Passage(f"{name}#{n}", name, text) for n, text in enumerate(_chunks(blocks, chunk_words, overlap_words), 1)]


def _jsonl_passages(file: Path, chunk_words: int, overlap_words: int) -> list[Passage]:
    rows = read_path(file)
    found = [(raw.row, _row_problem(raw)) for raw in rows]
    bad = [f"row {row}: {problem}" for row, problem in found if problem]
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InvalidValue(f"{file}: {'; '.join(bad[:3])}{more} — each line must be an object with a \"text\" "
                           'string, and optionally "id", "source", "title"')
    passages = []
    for raw in rows:
        value = raw.value
        given = value.get("id")
        passage_id = str(given) if given not in (None, "") else f"{file.name}:{raw.row}"
        source = str(value.get("source") or value.get("title") or file.name)
        texts = _chunks([(False, value["text"])], chunk_words, overlap_words)
        ids = [passage_id] if len(texts) == 1 else [f"{passage_id}#{n}" for n in range(1, len(texts) + 1)]
        passages += [Passage(i, source, text) for i, text in zip(ids, texts)]
    return passages


def _row_problem(raw: RawRow) -> str | None:
    if raw.error:
        return raw.error
    if not isinstance(raw.value, dict):
        return "not a JSON object"
    text = raw.value.get("text")
    return None if isinstance(text, str) and text.strip() else 'no "text" string'


def _chunks(blocks: list[Block], chunk_words: int, overlap_words: int) -> list[str]:
    """Paragraphs packed into chunks of at most ``chunk_words`` words (each headed by its section's heading);
    a heading starts a new chunk, and a longer paragraph is cut alone, by sentences, with overlap."""
    heading: str | None = None
    packed: list[str] = []
    chunks: list[str] = []

    def flush() -> None:
        if packed:
            chunks.append(_headed(heading, packed))
            packed.clear()

    for is_heading, text in blocks:
        words = text.split()
        if is_heading:
            flush()
            heading = " ".join(words) or None
        elif len(words) > chunk_words:
            flush()
            chunks += [_headed(heading, piece) for piece in _cut(text, chunk_words, overlap_words)]
        elif words:
            if len(packed) + len(words) > chunk_words:
                flush()
            packed += words
    flush()
    return chunks


def _cut(text: str, chunk_words: int, overlap_words: int) -> list[list[str]]:
    """A long paragraph in pieces of at most ``chunk_words`` words that end at sentence ends where they can,
    each after the first starting with the previous one's last ``overlap_words`` words."""
    step = chunk_words - overlap_words  # a unit must fit after an overlap
    units = [words[i:i + step] for sentence in _SENTENCE_END.split(text)
             for words in [sentence.split()] for i in range(0, len(words), step)]
    pieces: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        if current and len(current) + len(unit) > chunk_words:
            pieces.append(current)
            current = current[-overlap_words:] if overlap_words else []
        current = current + unit
    return pieces + [current] if current else pieces


def _headed(heading: str | None, words: list[str]) -> str:
    body = " ".join(words)
    if heading is None:
        return body
    return f"{heading} {body}" if heading[-1] in ".:?!" else f"{heading}: {body}"


def _paragraphs(text: str) -> list[Block]:
    return [(False, p) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _text_blocks(text: str, *, markdown: bool) -> list[Block]:
    """Paragraphs split at blank lines; in markdown also at headings (outside ``` fences, where # is code)."""
    if not markdown:
        return _paragraphs(text)
    blocks: list[Block] = []
    lines: list[str] = []
    fenced = False
    for line in [*text.splitlines(), ""]:
        heading = None if fenced else _HEADING.match(line)
        if _FENCE.match(line):
            fenced = not fenced
        elif heading or not line.strip():
            if lines:
                blocks.append((False, "\n".join(lines)))
                lines = []
            if heading:
                blocks.append((True, heading.group(1)))
        else:
            lines.append(line)
    return blocks


def _html_blocks(data: bytes) -> list[Block]:
    """The page's headings (h1-h4) and paragraphs (block elements), without scripts, styles and menus."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # from bytes it honours the page's declared charset
    for tag in soup.find_all(_HTML_DROPPED):
        tag.decompose()
    for tag in soup.find_all(_HTML_HEADINGS):
        tag.replace_with(f"\n\n{_MARK}{' '.join(tag.get_text(' ').split())}\n\n")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" ")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    return [(p.lstrip().startswith(_MARK), p.replace(_MARK, "")) for p in re.split(r"\n\s*\n", soup.get_text())
            if p.replace(_MARK, "").strip()]


def _pdf_pages(file: Path) -> list[str]:
    """Each page's text; an error naming the file when it is encrypted, unreadable or has no text layer."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    with reworded(file, "cannot read it"):
        data = file.read_bytes()
    try:
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]
    except (FileNotDecryptedError, DependencyError):  # DependencyError: AES, which needs the cryptography package
        raise InvalidValue(f"{file}: an encrypted PDF — save a copy without the password") from None
    except Exception as exc:  # pypdf raises many kinds on a damaged file; none is ours to keep
        raise InvalidValue(f"{file}: cannot read this PDF ({type(exc).__name__}: {exc}) — open and save it "
                           "again, or export it as text") from None
    if not any(text.strip() for text in pages):
        raise InvalidValue(f"{file}: this PDF has no text layer (scanned?) — run OCR first (e.g. ocrmypdf), "
                           "or leave it out of the documents")
    return pages
