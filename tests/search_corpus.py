"""A labelled corpus for search: lecture notes on distinct topics, and questions
about them that do not repeat the notes' wording."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from shared.chunking import chunk_pages, embedding_text
from shared.db.models import Course, Material, MaterialChunk
from shared.embeddings import Embedder

OPERATING_SYSTEMS = {
    "scheduling": (
        "CPU Scheduling",
        [
            "The short-term scheduler selects a process from the ready queue and allocates "
            "the processor to it. Round robin scheduling gives every runnable process a fixed "
            "time quantum; when the quantum expires the running process is preempted and put "
            "back at the tail of the ready queue.",
            "Priority scheduling runs the highest priority process first. Low priority jobs "
            "may starve, so aging gradually raises the priority of processes that wait long. "
            "Shortest job first minimises average waiting time but needs burst length estimates. "
            "Every context switch saves registers and costs time.",
        ],
    ),
    "memory": (
        "Virtual Memory and Paging",
        [
            "Virtual memory gives each process its own address space. Addresses are split into "
            "a page number and an offset; the page table maps pages to physical frames.",
            "When a process references a page that is not resident in RAM, the hardware raises "
            "a page fault and the kernel loads the page from disk, evicting a victim frame "
            "chosen by a replacement policy such as LRU or the clock algorithm. The translation "
            "lookaside buffer caches recent page table entries so address translation is fast.",
        ],
    ),
    "deadlock": (
        "Deadlocks",
        [
            "A deadlock is a set of processes each blocked forever, waiting for a resource held "
            "by another member of the set. Four conditions must hold together: mutual "
            "exclusion, hold and wait, no preemption and circular wait.",
            "Deadlock avoidance keeps the system in a safe state: the banker's algorithm grants "
            "a request only if some order still lets every process finish with its maximum "
            "claim. Detection instead builds a wait-for graph and looks for cycles.",
        ],
    ),
    "sorting": (
        "Sorting Algorithms",
        [
            "Sorting arranges the elements of an array in ascending order. Merge sort is a "
            "divide-and-conquer algorithm: it splits the array in halves, sorts each half "
            "recursively and merges the two sorted halves, in O(n log n) time in every case.",
            "Quicksort partitions the elements around a pivot so that smaller keys come first, "
            "then recurses on both partitions. Its expected running time is O(n log n) but a "
            "bad pivot gives quadratic behaviour. Insertion sort is fast on nearly sorted input.",
        ],
    ),
}

CELL_BIOLOGY = {
    "photosynthesis": (
        "Photosynthesis",
        [
            "Photosynthesis in the chloroplast converts light energy into chemical energy. "
            "Chlorophyll absorbs sunlight; the light-dependent reactions split water, release "
            "oxygen and make ATP and NADPH.",
            "In the Calvin cycle the enzyme RuBisCO fixes carbon dioxide, and ATP and NADPH "
            "drive the synthesis of glucose, the sugar the plant stores as starch.",
        ],
    ),
    "replication": (
        "DNA Replication",
        [
            "DNA, the genetic material of the cell, is duplicated before the cell divides. "
            "Helicase unwinds the double helix and DNA polymerase adds nucleotides to the new "
            "strand in the 5' to 3' direction.",
            "The leading strand is synthesised continuously while the lagging strand is built "
            "from Okazaki fragments joined by ligase. Replication is semiconservative: each "
            "daughter molecule keeps one parental strand.",
        ],
    ),
    "respiration": (
        "Cellular Respiration",
        [
            "Cellular respiration releases the energy stored in glucose. Glycolysis in the "
            "cytoplasm yields pyruvate; the Krebs cycle in the mitochondria oxidises it.",
            "The electron transport chain in the inner mitochondrial membrane pumps protons, and "
            "ATP synthase uses the gradient to produce most of the ATP molecules that carry "
            "energy for the cell's work.",
        ],
    ),
    "immunity": (
        "The Immune System",
        [
            "The innate immune system responds at once: macrophages and neutrophils engulf "
            "pathogens such as bacteria and viruses, and inflammation recruits more cells.",
            "Adaptive immunity is specific: B cells secrete antibodies that bind antigens, and "
            "cytotoxic T cells kill infected cells. Memory cells make the second response to "
            "the same pathogen faster, which is how vaccines protect.",
        ],
    ),
}

# (question, topic) — phrased as a student would ask, not copied from the notes.
QUESTIONS = [
    ("how does the operating system decide which program gets the processor next", "scheduling"),
    ("what happens when a program touches memory that is not loaded right now", "memory"),
    ("when do processes end up waiting on each other forever", "deadlock"),
    ("how do plants turn sunlight into sugar", "photosynthesis"),
    ("how is genetic material copied before cell division", "replication"),
    ("where does the cell make its energy molecules", "respiration"),
    ("divide and conquer method to put a list of numbers in order", "sorting"),
    ("how does the body recognise and fight a virus", "immunity"),
    ("caching address translations to make them quicker", "memory"),
    ("avoiding unsafe states when granting resources", "deadlock"),
]


def index_material(
    session: Session, material: Material, pages: list[str], embedder: Embedder, course: Course
) -> None:
    """Chunk and embed a material's pages as the pipeline does, through the data layer."""
    chunks = chunk_pages(pages)
    vectors = embedder.embed_documents(
        [embedding_text(c, title=material.title, course=course.name) for c in chunks]
    )
    session.execute(
        insert(MaterialChunk),
        [
            {
                "id": uuid.uuid4(),
                "material_id": material.id,
                "chunk_index": chunk.index,
                "content": chunk.text,
                "embedding": vector,
                "embedding_model": embedder.model,
                "page_number": chunk.page_number,
            }
            for chunk, vector in zip(chunks, vectors, strict=True)
        ],
    )
    material.chunk_count = len(chunks)
    material.ingest_status = "ready"


def corpus_materials(
    session: Session, embedder: Embedder, make_material: Any, make_course: Any
) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    """Index both courses; (topic -> material id, course name -> course id)."""
    topics: dict[str, uuid.UUID] = {}
    courses: dict[str, uuid.UUID] = {}
    for course_name, notes in (
        ("Operating Systems", OPERATING_SYSTEMS),
        ("Cell Biology", CELL_BIOLOGY),
    ):
        course = make_course(session, name=f"{course_name} {uuid.uuid4().hex[:4]}")
        courses[course_name] = course.id
        for topic, (title, pages) in notes.items():
            material = make_material(session, course=course, title=title, page_count=len(pages))
            index_material(session, material, pages, embedder, course)
            topics[topic] = material.id
    return topics, courses
