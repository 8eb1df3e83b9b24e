"""The repository speaks of the product only.

Every git-tracked text file is searched for words that describe how the code was developed rather than
what it does: a working period called a "session" ("the third session", "an earlier session's
figures"), a virtual machine called a "VM", machines "lent" or "leased", a "helper" or an "agent" that
did the work. Hardware is named as hardware ("2-core AMD EPYC"), dates as dates.

Product uses of the same words pass: database and ORM sessions, onnxruntime's ``InferenceSession``,
pytest's ``scope="session"``, ONNX's ``helper`` module, an HTTP ``User-Agent``. Third-party files kept
unchanged (the MinMod records and vocabularies, the us-atlas outlines, the npm lock file) are not searched.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Tracked paths (prefixes) holding third-party files kept byte for byte as published.
VENDORED = ("frontend/node_modules/", "data/raw/", "data/boundaries/", "frontend/package-lock.json")

_ORDINAL = (r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|earlier|later|this|that|next"
            r"|previous|last|one|another|each|every|same|other|two|three|four|five|six|seven|eight")

#: What each pattern finds (the name is printed with every hit).
PATTERNS: dict[str, re.Pattern[str]] = {
    "a working session": re.compile(
        rf"\b(?:{_ORDINAL})[- ]sessions?\b(?!'|\s+(?:per|objects?|options?|factory|pool)\b)|\bsession's\b|\bsessions'"
        r"|\b(?:working|development|dev|coding)[- ]sessions?\b",
        re.IGNORECASE),
    "a VM": re.compile(r"\bVMs?\b|\bvm\b"),
    "a lent or leased machine": re.compile(
        r"\b(?:lease|leases|leased|leasing|lent)\b|\b(?:GPU|device|machine)[- ]loans?\b", re.IGNORECASE),
    "a helper who did the work": re.compile(
        r"\bhelper(?:'s|s')|\bhelper[- ](?:sessions?|agents?)\b"
        r"|\b(?:a|the|another|each|one|this|that|our) helpers?\b"
        r"(?!\s+(?:functions?|modules?|class(?:es)?|methods?|scripts?|routines?)\b)",
        re.IGNORECASE),
    "an agent who did the work": re.compile(r"\bsub-?agents?\b|(?<![-\w])(?<!user )agents?(?![-\w])", re.IGNORECASE),
}


def tracked_text_files() -> list[Path]:
    """The git-tracked files that are text, outside the vendored folders (and not this test itself)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    files = []
    for name in out.decode().split("\0"):
        if not name or name.startswith(VENDORED):
            continue
        path = ROOT / name
        if path.resolve() == Path(__file__).resolve() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def development_text(text: str) -> list[tuple[int, str, str]]:
    """(line number, pattern name, matched words) of every hit in a text."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, pattern in PATTERNS.items():
            hits += [(number, name, m.group(0)) for m in pattern.finditer(line)]
    return hits


def test_patterns_find_development_text() -> None:
    lines = [
        "Measured in the third session on a 2-core machine.", "An earlier session's figures.",
        "The earlier sessions' tables.", "Trained on the fourth-session machine.", "Trained on a 2-core VM.",
        "Two VMs of this type.", '"machine": "vm, 2 cores"', "Trained on a lent H100.",
        "The lease allowed 15 minutes.", "Run on a leased GPU.", "The helper's report.", "A helper session wrote it.",
        "A sub-agent ran it.", "An agent wrote this.", "The device loan ran out.",
    ]
    assert [line for line in lines if not development_text(line)] == []


def test_patterns_pass_product_terms() -> None:
    text = "\n".join([
        '@pytest.fixture(scope="session")',
        "session = ort.InferenceSession(str(path), providers=providers)",
        "with Session(engine) as session: session.add(row)",
        "SessionDep = Annotated[Session, Depends(get_session)]",
        "start_new_session=True, one extra session at a time, the engine's own session, one session per process",
        "from onnx import TensorProto, helper, numpy_helper; helper.make_node('Add', ['a'], ['b'])",
        "Small helpers for status; alembic helpers for spatial columns; the helper function below",
        "headers = {'User-Agent': 'm3'}; https-proxy-agent; agent-base",
        "USGS mrdata VMS deposits (https://mrdata.usgs.gov/vms); numpy releases the GIL; released in 2024",
        "A 2-core AMD EPYC (no AVX-512), 24 GiB; one NVIDIA H100 80GB",
    ])
    assert development_text(text) == []


def test_no_development_text_in_tracked_files() -> None:
    hits = []
    for path in tracked_text_files():
        for number, name, words in development_text(path.read_text(encoding="utf-8")):
            hits.append(f"{path.relative_to(ROOT)}:{number}: {words!r} ({name})")
    assert not hits, (f"{len(hits)} line(s) describe the development process instead of the product; name the "
                      "hardware, the date or the document instead:\n" + "\n".join(hits))
