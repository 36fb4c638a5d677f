"""Issue 4: randomly corrupted extracts never crash the pipeline and never lose a row.

Starting from generated CSV extracts, Hypothesis corrupts files at random (junk values,
CP949/EUC-KR re-encoding, BOMs, binary garbage, dropped and extra columns, shuffled columns and
rows, truncation) and checks, for every table: delivered = used + collapsed + quarantined, every
used or quarantined row traces back to a distinct delivered record, refused files carry a
reason, and the marts still satisfy the contract's invariants.
"""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.core import invariants
from pipelines.core.contract import SPECS, TABLES
from pipelines.core.ingest import ingest_all
from pipelines.core.marts import build_marts
from pipelines.generate import generate_extracts

KINDS = [
    "junk",
    "cp949",
    "euc-kr",
    "bom",
    "binary",
    "drop_column",
    "extra_column",
    "shuffle_columns",
    "shuffle_rows",
    "truncate",
    "crlf",
]
JUNK = [
    "",
    " ",
    "abc",
    "NaN",
    "-1",
    "1e999",
    "2026/01/01",
    "２０２６",
    '"',
    "\x00",
    "ＡＣＴＩＶＥ",
    "99999999999999999999",
    "2026-02-30",
    "true?",
    "\t\n",
]
STATS: dict[str, int] = {"examples": 0, "corruptions": 0, "rows_lost": 0}


@pytest.fixture(scope="module", autouse=True)
def corruption_figures():
    """Prints the figures RELIABILITY.md quotes (see it for the command)."""
    yield
    if STATS["examples"]:
        print(f"\nRELIABILITY corruption: {json.dumps(STATS)}")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("pristine")
    generate_extracts(root, enrollments=40, seed=21, fmt="csv")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.csv")}


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _write(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def corrupt(data: bytes, kind: str, rng: random.Random) -> bytes:
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:  # already re-encoded or garbage: only byte-level damage applies
        kind = kind if kind in ("binary", "truncate", "bom", "crlf") else "truncate"
    if kind == "binary":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == "truncate":
        return data[: rng.randrange(len(data) + 1)]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind in ("cp949", "euc-kr"):
        return data.decode("utf-8-sig").encode(kind, errors="replace")
    rows = _rows(data)
    if len(rows) < 2:
        return data
    header, body = rows[0], rows[1:]
    if kind == "junk":
        for _ in range(rng.randrange(1, 6)):
            r = rng.randrange(len(body))
            if body[r]:
                body[r][rng.randrange(len(body[r]))] = rng.choice(JUNK)
    elif kind == "drop_column":
        i = rng.randrange(len(header))
        header, body = header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in body]
    elif kind == "extra_column":
        header = [*header, "note"]
        body = [[*r, rng.choice(JUNK)] for r in body]
    elif kind == "shuffle_columns":
        order = list(range(len(header)))
        rng.shuffle(order)
        header = [header[i] for i in order]
        body = [[r[i] if i < len(r) else "" for i in order] for r in body]
    elif kind == "shuffle_rows":
        rng.shuffle(body)
    return _write([header, *body])


def check_nothing_lost(landing: Path) -> int:
    results = ingest_all(landing)
    for table in TABLES:
        r = results[table]
        lost = r.delivered - (r.used + r.collapsed + r.quarantined)
        STATS["rows_lost"] += lost
        assert lost == 0, table
        lineage = [
            *zip(r.raw["_source_file"], r.raw["_source_row"], strict=True),
            *zip(r.quarantine["_source_file"], r.quarantine["_source_row"], strict=True),
        ]
        assert len(lineage) == len(set(lineage)), f"{table}: a record used twice"
        assert {f for f, _ in lineage} <= set(r.files), table
        assert all(refused.reason for refused in r.refused)
    raw = {t: r.raw for t, r in results.items()}
    marts = build_marts(raw, datetime(2026, 11, 25, 12))
    progress = marts["lecture_progress"]
    problems = [
        *invariants.lecture_progress_violations(progress, raw["enrollments"].height),
        *invariants.session_progress_violations(marts["session_progress"], progress),
        *invariants.risk_log_violations(marts["risk_log"], progress),
        *invariants.clinic_link_violations(marts["clinic_links"], progress),
    ]
    assert not problems, problems
    return sum(r.delivered for r in results.values())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(KINDS), st.integers(0, 2**31)),
        min_size=1,
        max_size=5,
    )
)
def test_corrupted_extracts_lose_nothing(pristine, tmp_path_factory, plan):
    landing = tmp_path_factory.mktemp("corrupt")
    files = dict(pristine)
    names = sorted(files)
    for pick, kind, seed in plan:
        name = names[pick % len(names)]
        files[name] = corrupt(files[name], kind, random.Random(seed))
    for name, data in files.items():
        (landing / name).parent.mkdir(parents=True, exist_ok=True)
        (landing / name).write_bytes(data)
    STATS["rows_checked"] = STATS.get("rows_checked", 0) + check_nothing_lost(landing)
    STATS["examples"] += 1
    STATS["corruptions"] += len(plan)


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr"])
@pytest.mark.parametrize("bom", [False, True])
def test_korean_excel_encodings(tmp_path, encoding, bom):
    from tests.conftest import BASE, write_landing

    landing = write_landing(tmp_path, BASE)
    text = "lecture_id,academy_id,title\r\n1,10,고2 수학 심화반 (내신)\r\n"
    data = text.encode(encoding)
    # some tools put a UTF-8 BOM in front of CP949 bytes; it is dropped, not read as text
    (landing / "lectures.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    result = ingest_all(landing)["lectures"]
    assert not result.refused
    assert result.raw["title"].to_list() == ["고2 수학 심화반 (내신)"]


# ---- a seeded corpus of damaged files (issue 11) ------------------------------------------
#
# Byte-level damage of real generated extracts, CSV and Parquet, many files per landing folder:
# every file must be read or refused by name with a one-line reason, no reader's panic may
# escape or print a backtrace, rows are conserved, and (CSV) the row-by-row reference refuses
# the same files and reads the same rows.

# landing folders per format; all but two of each folder's files are damaged (the cost of a
# run is per file read, so many damaged files per folder keep the corpus at ~10 s a format)
CORPUS = {"csv": 15, "parquet": 13}
CSV_DAMAGE = ["flip", "truncate", "junk", "header", "encoding", "quote"]
PARQUET_DAMAGE = ["flip", "truncate", "junk", "header", "footer", "page", "names"]
CORPUS_STATS: dict[str, int] = {}


def damage(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One seeded piece of byte-level damage to a file's content."""
    out = bytearray(data)
    if kind == "flip":  # bits flipped anywhere
        for _ in range(rng.randrange(1, 9)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":  # cut anywhere, also mid-record or mid-character
        del out[rng.randrange(len(out)) :]
    elif kind == "junk":  # random bytes appended
        out += rng.randbytes(rng.randrange(1, 65))
    elif kind == "header":  # the CSV header line, or Parquet's leading magic bytes
        end = data.find(b"\n") if data.find(b"\n") > 0 else min(len(data), 8)
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(end)] ^= 1 << rng.randrange(8)
    elif kind == "footer":  # Parquet metadata (schema, column names, offsets) at the end
        for _ in range(rng.randrange(1, 5)):
            out[len(out) - 1 - rng.randrange(min(len(out), 400))] ^= 1 << rng.randrange(8)
    elif kind == "page":  # Parquet data pages: values, levels, dictionary indices
        body = max(len(out) - 400, 5)
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(4, body)] ^= 1 << rng.randrange(8)
    elif kind == "names":  # a byte of a column name in the schema made non-UTF-8
        at = [i for i in range(len(data) - 1) if data[i : i + 3] in (b"_id", b"_at", b"ion")]
        if at:
            out[rng.choice(at) + rng.randrange(3)] |= 0x80
    elif kind == "encoding":  # the text saved in another encoding
        text = data.decode("utf-8-sig")
        codec = rng.choice(["utf-16", "latin-1", "cp949", "utf-32", "shift_jis"])
        out = bytearray(text.encode(codec, errors="replace"))
    elif kind == "quote":  # a quote opened at the start of a field, never closed
        lines = data.split(b"\n")
        i = rng.randrange(len(lines))
        commas = [j + 1 for j, b in enumerate(lines[i]) if b == ord(",")]
        at = rng.choice(commas) if commas else 0
        lines[i] = lines[i][:at] + b'"' + lines[i][at:]
        out = bytearray(b"\n".join(lines))
    return bytes(out)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    files = {}
    for fmt in CORPUS:
        root = tmp_path_factory.mktemp(f"generated-{fmt}")
        generate_extracts(root, enrollments=20, seed=5, fmt=fmt)
        files[fmt] = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob(f"*.{fmt}"))
        }
    return files


@pytest.fixture(scope="module", autouse=True)
def corpus_figures():
    yield
    if CORPUS_STATS:
        print(f"\nRELIABILITY corruption corpus: {json.dumps(CORPUS_STATS)}")


@pytest.mark.parametrize("fmt", list(CORPUS))
def test_damaged_files_are_read_or_refused_by_name(generated, tmp_path, capfd, fmt):
    from tests.compare import assert_same
    from tests.reference import reference_ingest

    rng = random.Random(f"issue-11-{fmt}")
    kinds = CSV_DAMAGE if fmt == "csv" else PARQUET_DAMAGE
    names = sorted(generated[fmt])
    stats = {"files_damaged": 0, "refused": 0, "read": 0, "rows_delivered": 0}
    for n in range(CORPUS[fmt]):
        landing = tmp_path / f"{fmt}-{n}"
        damaged = set(rng.sample(names, len(names) - 2))
        for name, data in generated[fmt].items():
            if name in damaged:
                data = damage(data, rng.choice(kinds), rng)
            (landing / name).parent.mkdir(parents=True, exist_ok=True)
            (landing / name).write_bytes(data)
        results = ingest_all(landing)
        refused = {r.file: r.reason for t in TABLES for r in results[t].refused}
        read = {f for t in TABLES for f in results[t].files}
        assert read | set(refused) == set(names) and not read & set(refused), n
        for file, reason in refused.items():
            assert reason and "\n" not in reason and "Traceback" not in reason, (file, reason)
            assert str(landing) not in reason, reason
        for table in TABLES:
            r = results[table]
            assert r.delivered == r.used + r.collapsed + r.quarantined, (n, table)
            lineage = [
                *zip(r.raw["_source_file"], r.raw["_source_row"], strict=True),
                *zip(r.quarantine["_source_file"], r.quarantine["_source_row"], strict=True),
            ]
            assert len(lineage) == len(set(lineage)), (n, table)
            assert {f for f, _ in lineage} <= set(r.files), (n, table)
        if fmt == "csv":  # the row-by-row reference reads the same rows, refuses the same files
            ref_raw, ref_quarantine, ref_refused = reference_ingest(landing)
            assert sorted(refused) == sorted(f for f, _ in ref_refused), n
            for table in TABLES:
                key = ["_source_file", "_source_row"]
                assert_same(f"{n} raw.{table}", results[table].raw, ref_raw[table], key)
                assert_same(
                    f"{n} quarantine.{table}",
                    results[table].quarantine.select([*SPECS[table].column_names, "_reason", *key]),
                    ref_quarantine[table],
                    key,
                )
        stats["files_damaged"] += len(damaged)
        stats["refused"] += len(damaged & set(refused))
        stats["read"] += len(damaged & read)
        stats["rows_delivered"] += sum(r.delivered for r in results.values())
    # no panic report or backtrace of a reader reaches the terminal
    err = capfd.readouterr().err
    assert "panicked" not in err and "backtrace" not in err, err[:500]
    CORPUS_STATS.update({f"{fmt}_{k}": v for k, v in stats.items()})
