"""The agent's search tool backend: a real local index over the warehouse handbook and the book.

The corpus is the warehouse safety handbook the book writes (``data/agent/handbook/*.md``, one rule
topic per file, front matter ``id`` and ``title``) plus the book's own pages (``book/**/*.md``) and,
optionally, the Markdown cells of the notebooks. Every document is cut into chunks at its headings
(a section longer than ``max_chars`` is cut again at paragraph, then sentence, boundaries), and
every chunk keeps its document id, title, source path and heading.

:class:`HandbookIndex` ranks chunks three ways:

* ``bm25``: lexical, with ``bm25s`` (Lucene's BM25 variant, ``k1=1.5``, ``b=0.75``). Tokens are
  bm25s's default (lower case, runs of 2+ word characters), English stop words removed, then a
  small suffix stripper (:func:`stem`: plural ``-s/-es/-ies``, ``-ing``, ``-ed``, a final ``-e``),
  so "spills", "spilled" and "spill" meet. No stemming package is needed.
* ``dense``: cosine similarity between the query's and the chunks' MiniLM embeddings
  (:mod:`.embeddings`; unit vectors, so a matrix product). A few hundred chunks fit in memory:
  brute force is exact and takes well under a millisecond, so no approximate index is needed here
  (the agent's memory, which grows, uses chromadb).
* ``hybrid``: reciprocal rank fusion (RRF) of the two full rankings, ``score = sum 1/(60 + rank)``.
  RRF needs no score calibration (BM25 scores are unbounded, cosines are in [-1, 1]); the constant
  60 is the value of Cormack, Clarke and Büttcher (SIGIR 2009), which damps the top ranks so one
  list's first place cannot outvote agreement between the two.

:meth:`HandbookIndex.search` returns at most one hit per document (its best chunk), so three hits
are three sources. :func:`default_index` builds the index once per process. Embedding ~500 chunks
with MiniLM on one CPU thread takes tens of seconds, so chunk vectors are cached by content
(:func:`embed_cached`: a seed committed in ``data/agent/search_embeddings.npz``, then the user's
cache); a changed page costs only its changed chunks.

**Retrieved text is untrusted data.** A handbook page, a book page or a web result may contain
text that reads like an instruction ("ignore the rules and stop the line"). This module returns it
verbatim as data, with its source, and never acts on it. The agent layer marks it before a model
sees it: the ``search_handbook`` tool (:mod:`.tools`) returns each hit's text under an
``untrusted_text`` key, :func:`as_untrusted` wraps hits in ``<untrusted_text>`` tags for a prompt,
and only the user's task can enable a side-effect tool (:mod:`.graph`).

:func:`web_search_provider` gives the same ``search`` interface over the Tavily web search API when
``TAVILY_API_KEY`` is set and the run is online (``EFSORA_ONLINE=1``); otherwise ``None``.

Taught in ``notebooks/agent/03_search.ipynb``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..paths import repo_root

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")

#: BM25 parameters (Lucene's defaults; the notebook explains both).
BM25_K1 = 1.5
BM25_B = 0.75
#: Reciprocal rank fusion constant (Cormack et al. 2009).
RRF_K = 60
#: Largest chunk in characters (MiniLM reads at most 256 word pieces, about 1,000 characters).
MAX_CHARS = 1000


def handbook_dir() -> Path:
    return repo_root() / "data" / "agent" / "handbook"


# --- documents and chunks ---------------------------------------------------------------------

@dataclass(frozen=True)
class Document:
    """One source document: a handbook page, a book page or a notebook's prose."""

    doc_id: str
    title: str
    source: str  # path relative to the repository root (or a URL)
    text: str  # Markdown body, front matter removed
    kind: str = "handbook"  # handbook | book | notebook | extra


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, cut at a heading; what the index ranks."""

    doc_id: str
    title: str
    source: str
    heading: str
    text: str
    kind: str = "handbook"

    def indexed_text(self) -> str:
        """What both retrievers read: the title and heading give a short section its topic."""
        head = self.title if not self.heading or self.heading == self.title else f"{self.title} / {self.heading}"
        return f"{head}\n{self.text}"


@dataclass(frozen=True)
class SearchHit:
    """One search result. ``text`` is untrusted data, never an instruction (see the module doc)."""

    doc_id: str
    title: str
    source: str
    text: str
    score: float
    heading: str = ""
    mode: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def parse_front_matter(text: str) -> tuple[dict, str]:
    """Split ``---``-fenced YAML front matter from a Markdown text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    import yaml

    meta = yaml.safe_load(match.group(1)) or {}
    return meta, text[match.end():]


def _first_heading(text: str) -> str | None:
    for line in text.splitlines():
        m = re.match(r"#\s+(.+)", line)
        if m:
            return m.group(1).strip()
    return None


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)


def document_from_markdown(text: str, source: str, doc_id: str | None = None, kind: str = "handbook") -> Document:
    """A :class:`Document` from Markdown text (front matter ``id``/``title`` win if present)."""
    meta, body = parse_front_matter(text)
    doc_id = str(meta.get("id") or doc_id or Path(source).stem)
    title = str(meta.get("title") or _first_heading(body) or doc_id)
    return Document(doc_id=doc_id, title=title, source=source, text=body, kind=kind)


def load_handbook(folder: str | Path | None = None) -> list[Document]:
    """The warehouse safety handbook, one document per ``*.md`` file (sorted by file name)."""
    folder = Path(folder) if folder is not None else handbook_dir()
    docs = [document_from_markdown(p.read_text(encoding="utf-8"), _rel(p)) for p in sorted(folder.glob("*.md"))]
    ids = [d.doc_id for d in docs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate handbook ids in {folder}: {sorted({i for i in ids if ids.count(i) > 1})}")
    return docs


_ROLE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`")  # a glued figure: its value is not in the source
_OTHER_ROLE = re.compile(r"\{(?:doc|ref|cite|cite:\w+|numref|term|download)\}`([^`<]*?)(?:\s*<[^`]*>)?`")


def _clean_myst(text: str) -> str:
    text = _ROLE.sub("(a measured figure)", text)
    text = _OTHER_ROLE.sub(lambda m: m.group(1), text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


#: Book pages left out of the corpus: generated on every run (their text changes with each execution).
GENERATED_PAGES = frozenset({"book/appendix/notebook_costs.md"})


def load_book_pages(root: str | Path | None = None) -> list[Document]:
    """The book's own Markdown pages (``book/**/*.md`` except :data:`GENERATED_PAGES`); doc id = path without ``.md``."""
    root = Path(root) if root is not None else repo_root()
    docs = []
    for p in sorted((root / "book").rglob("*.md")):
        rel = p.relative_to(root).as_posix()
        if rel in GENERATED_PAGES:
            continue
        doc = document_from_markdown(_clean_myst(p.read_text(encoding="utf-8")), rel, doc_id=rel[:-3], kind="book")
        if doc.text.strip():
            docs.append(Document(doc_id=rel[:-3], title=doc.title, source=rel, text=doc.text, kind="book"))
    return docs


def load_notebook_prose(root: str | Path | None = None) -> list[Document]:
    """The Markdown cells of every notebook (``notebooks/**/*.ipynb``), one document per notebook."""
    root = Path(root) if root is not None else repo_root()
    docs = []
    for p in sorted((root / "notebooks").rglob("*.ipynb")):
        try:
            cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
        except (json.JSONDecodeError, KeyError):
            continue
        text = "\n\n".join("".join(c["source"]) for c in cells if c.get("cell_type") == "markdown")
        rel = p.relative_to(root).as_posix()
        if text.strip():
            text = _clean_myst(text)
            docs.append(Document(doc_id=rel[:-6], title=_first_heading(text) or rel, source=rel, text=text,
                                 kind="notebook"))
    return docs


def load_corpus(*, book: bool = True, notebooks: bool = False, handbook: str | Path | None = None,
                extra: Iterable[Document] = ()) -> list[Document]:
    """The search corpus: the handbook, then (by default) the book's pages, then any ``extra``."""
    docs = load_handbook(handbook)
    if book:
        docs += load_book_pages()
    if notebooks:
        docs += load_notebook_prose()
    return docs + list(extra)


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    if len(paragraph) <= max_chars:
        return [paragraph]
    pieces, current = [], ""
    for sentence in _SENTENCE.split(paragraph):
        while len(sentence) > max_chars:  # one enormous "sentence" (a table row, a URL list)
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def chunk_document(doc: Document, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Cut ``doc`` at its headings; a section over ``max_chars`` is cut at paragraphs, then sentences.

    Headings inside fenced code blocks are not headings. A chunk's ``heading`` is its section's
    heading (the document title before the first heading). Empty sections are dropped.
    """
    sections: list[tuple[str, list[str]]] = [(doc.title, [])]
    in_fence = False
    for line in doc.text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            sections.append((m.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    chunks = []
    for heading, lines in sections:
        body = "\n".join(lines).strip()
        if not body:
            continue
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        current = ""
        for paragraph in paragraphs:
            for piece in _split_long(paragraph, max_chars):
                if current and len(current) + 2 + len(piece) > max_chars:
                    chunks.append(Chunk(doc.doc_id, doc.title, doc.source, heading, current, doc.kind))
                    current = piece
                else:
                    current = f"{current}\n\n{piece}" if current else piece
        if current:
            chunks.append(Chunk(doc.doc_id, doc.title, doc.source, heading, current, doc.kind))
    return chunks


def chunk_corpus(docs: Iterable[Document], max_chars: int = MAX_CHARS) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, max_chars)]


# --- tokenisation for BM25 --------------------------------------------------------------------

def stem(word: str) -> str:
    """A small English suffix stripper (no package needed), applied after lower-casing.

    Plurals as in Harman's S-stemmer (``batteries -> battery``, ``boxes -> box``, ``hats -> hat``,
    not ``-ss``/``-us``), then ``-ing`` and ``-ed`` when at least three letters remain (a doubled
    final consonant is undone: ``stopped -> stop``), then a final ``-e`` (``drive``/``driving`` ->
    ``driv``). Crude on purpose: it only has to make the query's and the document's forms meet.
    """
    w = word
    if len(w) > 4 and w.endswith("ies") and not w.endswith(("eies", "aies")):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("es") and w[-3] in "sxz" and not w.endswith("ses"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _stem_all(words: list[str]) -> list[str]:
    return [stem(w) for w in words]


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """bm25s's tokeniser (lower case, ``\\w\\w+`` runs, English stop words) plus :func:`stem`."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", stemmer=_stem_all, return_ids=False,
                          show_progress=False)


# --- embeddings cache (content-addressed: memory, then the user's cache, then the shipped seed) ---

_EMBED_CACHE: dict[str, np.ndarray] = {}
_cache_lock = threading.Lock()
_disk_loaded = False


def shipped_cache_path() -> Path:
    """Embeddings of the corpus as committed, so a clean clone does not embed every page again."""
    return repo_root() / "data" / "agent" / "search_embeddings.npz"


def user_cache_path() -> Path:
    from ..paths import efsora_home

    return efsora_home() / "agent" / "search_embeddings.npz"


@functools.cache
def _model_tag() -> str:
    from ..assets import asset
    from .embeddings import ASSET_NAME

    return asset(ASSET_NAME).sha256 or ASSET_NAME


def embedding_key(text: str) -> str:
    """Cache key of one text: sha1 of the model's sha256 and the text (a new model misses the cache)."""
    return hashlib.sha1(f"{_model_tag()}\0{text}".encode("utf-8")).hexdigest()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"].astype(str).tolist()
            return dict(zip(keys, data["vectors"].astype(np.float32)))
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return {}


def _write_npz(path: Path, entries: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(entries)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, keys=np.array(keys, dtype="S40"), vectors=np.stack([entries[k] for k in keys]).astype(np.float32))
    os.replace(tmp, path)


def _load_disk_caches() -> None:
    global _disk_loaded
    if _disk_loaded:
        return
    for path in (shipped_cache_path(), user_cache_path()):
        _EMBED_CACHE.update(_read_npz(path))
    _disk_loaded = True


def embed_cached(texts: Sequence[str], *, persist: bool = True) -> tuple[np.ndarray, int]:
    """MiniLM embeddings of ``texts`` and how many had to be computed now.

    Looked up by :func:`embedding_key` in memory, the user's cache (``$EFSORA_HOME/agent``) and the
    shipped seed (``data/agent/search_embeddings.npz``); only the misses are embedded, and with
    ``persist`` they are added to the user's cache. A cached vector is the same float32 vector
    :func:`~.embeddings.embed` returned when it was stored.
    """
    from .embeddings import DIMENSIONS, embed

    texts = list(texts)
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32), 0
    keys = [embedding_key(t) for t in texts]
    with _cache_lock:
        _load_disk_caches()
        missing = sorted({k: i for i, k in enumerate(keys) if k not in _EMBED_CACHE}.values())
    if missing:
        vectors = embed([texts[i] for i in missing])
        with _cache_lock:
            for i, v in zip(missing, vectors):
                _EMBED_CACHE[keys[i]] = v
            if persist:
                try:
                    stored = _read_npz(user_cache_path())
                    stored.update({keys[i]: _EMBED_CACHE[keys[i]] for i in missing})
                    _write_npz(user_cache_path(), stored)
                except OSError:  # a read-only home: the cache is an optimisation only
                    pass
    with _cache_lock:
        return np.stack([_EMBED_CACHE[k] for k in keys]), len(missing)


def clear_embedding_cache(memory: bool = True) -> None:
    """Forget in-memory embeddings (the next build reads the disk caches again, or embeds)."""
    global _disk_loaded
    with _cache_lock:
        if memory:
            _EMBED_CACHE.clear()
        _disk_loaded = False


def write_shipped_cache(index: "HandbookIndex") -> Path:
    """Store ``index``'s chunk embeddings as the shipped seed (run when the book's pages change)."""
    texts = [c.indexed_text() for c in index.chunks]
    entries = {embedding_key(t): v for t, v in zip(texts, index.vectors)}
    _write_npz(shipped_cache_path(), entries)
    return shipped_cache_path()


# --- the index ----------------------------------------------------------------------------------

@dataclass
class BuildTimes:
    """Seconds spent building each part of an index."""

    load_and_chunk: float = 0.0
    bm25: float = 0.0
    dense: float = 0.0  # embedding the chunks (or reading them from the cache)

    @property
    def total(self) -> float:
        return self.load_and_chunk + self.bm25 + self.dense


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: ``score(item) = sum over rankings of 1 / (k + rank)``, ranks from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


class HandbookIndex:
    """BM25, dense and hybrid search over chunks of the handbook and the book.

    Chunk embeddings come from :func:`embed_cached` (``cache=True``): a clean clone reads the
    shipped seed and embeds only chunks that changed since it was written; ``cache=False`` embeds
    every chunk now. ``times`` holds the build's seconds per stage, ``embedded_now`` how many chunks
    were embedded during the build.

    >>> index = HandbookIndex.from_documents(load_corpus())      # doctest: +SKIP
    >>> [h.doc_id for h in index.search("pallet left in a forklift lane")]  # doctest: +SKIP
    ['lane-obstructions', ...]
    """

    def __init__(self, chunks: Sequence[Chunk], *, k1: float = BM25_K1, b: float = BM25_B,
                 rrf_k: int = RRF_K, dense: bool = True, cache: bool = True, persist: bool = True):
        import bm25s

        if not chunks:
            raise ValueError("an index needs at least one chunk")
        self.chunks = list(chunks)
        self.rrf_k = rrf_k
        self.documents: list[Document] = []
        self.times = BuildTimes()
        texts = [c.indexed_text() for c in self.chunks]

        start = time.perf_counter()
        self.bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.bm25.index(tokenize(texts), show_progress=False)
        self.times.bm25 = time.perf_counter() - start

        self.vectors: np.ndarray | None = None
        self.embedded_now = 0  # chunks embedded during this build (the rest came from a cache)
        if dense:
            start = time.perf_counter()
            if cache:
                self.vectors, self.embedded_now = embed_cached(texts, persist=persist)
            else:  # a cold build: embed every chunk now (the notebook times this)
                from .embeddings import embed

                self.vectors, self.embedded_now = embed(texts), len(texts)
            self.times.dense = time.perf_counter() - start

    @classmethod
    def from_documents(cls, docs: Iterable[Document], *, max_chars: int = MAX_CHARS, **kwargs) -> "HandbookIndex":
        start = time.perf_counter()
        docs = list(docs)
        chunks = chunk_corpus(docs, max_chars)
        elapsed = time.perf_counter() - start
        index = cls(chunks, **kwargs)
        index.times.load_and_chunk += elapsed
        index.documents = docs
        return index

    @property
    def doc_ids(self) -> list[str]:
        return list(dict.fromkeys(c.doc_id for c in self.chunks))

    # -- scores and rankings over all chunks --
    def bm25_scores(self, query: str) -> np.ndarray:
        ids = self.bm25.get_tokens_ids(tokenize([query])[0])
        if not ids:  # no query word is in the corpus: every chunk scores 0
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)

    def dense_scores(self, query: str) -> np.ndarray:
        if self.vectors is None:
            raise ValueError("this index was built without embeddings (dense=False)")
        from .embeddings import embed

        return self.vectors @ embed([query])[0]

    def ranking(self, query: str, mode: Mode = "hybrid") -> list[tuple[int, float]]:
        """Every chunk index with its score, best first (chunks that BM25 scores 0 are left out)."""
        if mode == "bm25":
            scores = self.bm25_scores(query)
            order = np.argsort(-scores, kind="stable")
            return [(int(i), float(scores[i])) for i in order if scores[i] > 0]
        if mode == "dense":
            scores = self.dense_scores(query)
            order = np.argsort(-scores, kind="stable")
            return [(int(i), float(scores[i])) for i in order]
        if mode == "hybrid":
            lexical = [i for i, _ in self.ranking(query, "bm25")]
            semantic = [i for i, _ in self.ranking(query, "dense")]
            fused = rrf([lexical, semantic], self.rrf_k)
            return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")

    def search(self, query: str, k: int = 3, mode: Mode = "hybrid", *, per_doc: bool = True) -> list[SearchHit]:
        """The top ``k`` hits for ``query``; with ``per_doc`` (default) one hit (its best chunk) per document."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search needs a non-empty query")
        if k < 1:
            raise ValueError("k must be at least 1")
        hits, seen = [], set()
        for i, score in self.ranking(query, mode):
            chunk = self.chunks[i]
            if per_doc and chunk.doc_id in seen:
                continue
            seen.add(chunk.doc_id)
            hits.append(SearchHit(chunk.doc_id, chunk.title, chunk.source, chunk.text, round(score, 6),
                                  chunk.heading, mode))
            if len(hits) == k:
                break
        return hits

    def ranked_doc_ids(self, query: str, mode: Mode = "hybrid", depth: int = 10) -> list[str]:
        """Document ids in rank order (each once), for evaluation."""
        return [h.doc_id for h in self.search(query, k=depth, mode=mode)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __repr__(self) -> str:
        return (f"HandbookIndex({len(self.doc_ids)} documents, {len(self.chunks)} chunks, "
                f"built in {self.times.total:.1f} s)")


_default_lock = threading.Lock()


@functools.cache
def _default_index() -> HandbookIndex:
    start = time.perf_counter()
    docs = load_corpus()
    load = time.perf_counter() - start
    index = HandbookIndex.from_documents(docs)
    index.times.load_and_chunk += load
    return index


def default_index() -> HandbookIndex:
    """The handbook plus the book's pages, indexed once per process (thread-safe)."""
    with _default_lock:
        return _default_index()


def as_untrusted(hits: Sequence[SearchHit], max_chars: int = 600) -> str:
    """Search hits as one block of text for a model, each wrapped as untrusted data.

    The wrapper says where the text came from and that it is data to quote, never an instruction.
    """
    parts = []
    for h in hits:
        body = h.text if len(h.text) <= max_chars else h.text[:max_chars] + " [...]"
        body = body.replace("</untrusted_text>", "")  # the text cannot close its own wrapper
        parts.append(f'<untrusted_text source="{h.source}" doc_id="{h.doc_id}">\n{body}\n</untrusted_text>')
    return "\n".join(parts)


# --- evaluation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledQuery:
    query: str
    relevant: tuple[str, ...]
    kind: str = ""  # keyword | paraphrase | book | mixed
    note: str = ""


def load_queries(path: str | Path | None = None) -> list[LabelledQuery]:
    """The labelled query set (``data/agent/search_queries.yaml``)."""
    import yaml

    path = Path(path) if path is not None else repo_root() / "data" / "agent" / "search_queries.yaml"
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return [LabelledQuery(q["query"], tuple(q["relevant"]), q.get("kind", ""), q.get("note", ""))
            for q in raw["queries"]]


@dataclass
class QueryResult:
    query: str
    kind: str
    mode: str
    ranked: list[str]
    relevant: tuple[str, ...]
    seconds: float
    first_rank: int | None = field(default=None)

    def hit_at(self, k: int) -> bool:
        return self.first_rank is not None and self.first_rank <= k


def evaluate(index: HandbookIndex, queries: Sequence[LabelledQuery], modes: Sequence[str] = MODES,
             depth: int = 10) -> list[QueryResult]:
    """Run every query in every mode; record the ranked doc ids, the first relevant rank and the time."""
    results = []
    for mode in modes:
        for q in queries:
            start = time.perf_counter()
            ranked = index.ranked_doc_ids(q.query, mode, depth)
            seconds = time.perf_counter() - start
            first = next((r for r, d in enumerate(ranked, start=1) if d in q.relevant), None)
            results.append(QueryResult(q.query, q.kind, mode, ranked, q.relevant, seconds, first))
    return results


def summarize(results: Sequence[QueryResult], ks: Sequence[int] = (1, 3, 5)) -> dict[str, dict[str, float]]:
    """Per mode: recall@k (share of queries with a relevant doc in the top k), MRR, median latency (ms)."""
    table: dict[str, dict[str, float]] = {}
    for mode in dict.fromkeys(r.mode for r in results):
        rows = [r for r in results if r.mode == mode]
        summary = {f"recall@{k}": sum(r.hit_at(k) for r in rows) / len(rows) for k in ks}
        summary["mrr"] = sum(1.0 / r.first_rank for r in rows if r.first_rank) / len(rows)
        summary["median_ms"] = float(np.median([r.seconds for r in rows]) * 1000)
        summary["queries"] = len(rows)
        table[mode] = summary
    return table


# --- web search behind the same interface -------------------------------------------------------

TAVILY_URL = "https://api.tavily.com/search"


class TavilySearch:
    """Web search with the Tavily API (``POST /search``, ``Authorization: Bearer <key>``).

    Same ``search(query, k)`` as :class:`HandbookIndex`, returning :class:`SearchHit` with the page
    URL as ``doc_id`` and ``source``. Results are web text: untrusted data, like every hit.
    ``transport`` is an ``httpx`` transport (tests pass a fake one; nothing else should).
    """

    def __init__(self, api_key: str, *, transport=None, timeout: float = 20.0, search_depth: str = "basic"):
        if not api_key:
            raise ValueError("TavilySearch needs an API key")
        self._api_key = api_key
        self._transport = transport
        self.timeout = timeout
        self.search_depth = search_depth

    def __repr__(self) -> str:  # never print the key
        return f"TavilySearch(search_depth={self.search_depth!r})"

    def request_body(self, query: str, k: int) -> dict:
        return {"query": query, "max_results": int(k), "search_depth": self.search_depth,
                "include_answer": False, "include_raw_content": False}

    @staticmethod
    def parse(payload: dict, k: int) -> list[SearchHit]:
        """Tavily's JSON (``results``: ``title``, ``url``, ``content``, ``score``) as hits, best first."""
        hits = []
        for item in payload.get("results") or []:
            url = str(item.get("url") or "")
            if not url:
                continue
            hits.append(SearchHit(doc_id=url, title=str(item.get("title") or url), source=url,
                                  text=str(item.get("content") or ""), score=float(item.get("score") or 0.0),
                                  mode="web"))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def search(self, query: str, k: int = 3, mode: str = "web") -> list[SearchHit]:
        import httpx

        if not isinstance(query, str) or not query.strip():
            raise ValueError("search needs a non-empty query")
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        with httpx.Client(transport=self._transport, timeout=self.timeout) as client:
            response = client.post(TAVILY_URL, json=self.request_body(query, k), headers=headers)
            response.raise_for_status()
            return self.parse(response.json(), k)


def web_search_provider(environ: dict | None = None, *, transport=None) -> TavilySearch | None:
    """A web search provider with the handbook's ``search`` interface, or ``None``.

    ``None`` unless the run is online (``EFSORA_ONLINE=1``, the book's switch) *and* ``TAVILY_API_KEY``
    is set. Building the provider makes no request; only :meth:`TavilySearch.search` does.
    """
    env = os.environ if environ is None else environ
    key = env.get("TAVILY_API_KEY", "").strip()
    if env.get("EFSORA_ONLINE") != "1" or not key:
        return None
    return TavilySearch(key, transport=transport)


__all__ = [
    "BM25_B", "BM25_K1", "MAX_CHARS", "MODES", "RRF_K", "Chunk", "Document", "HandbookIndex", "LabelledQuery",
    "SearchHit", "TavilySearch", "as_untrusted", "clear_embedding_cache", "embed_cached", "embedding_key", "chunk_corpus", "chunk_document", "default_index", "evaluate",
    "load_book_pages", "load_corpus", "load_handbook", "load_notebook_prose", "load_queries", "rrf", "stem",
    "summarize", "tokenize", "web_search_provider", "write_shipped_cache",
]
