"""Tests of the synthetic extract generator (pipelines/generate.py).

The bad-row checks use a small, independent reading of the data contract (section 1 types,
section 2 quarantine order) written here, not the pipeline's own reader, so that the generator's
manifest of expected quarantine is checked against the contract text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest

from pipelines.generate import COLUMNS, TABLES, generate_extracts

EVENT_TABLES = ("attendance", "video_progress", "submissions", "clinic_requests")
FOLDER_TABLES = ("attendance", "video_progress", "submissions")
REASONS = (
    "missing_value",
    "invalid_type",
    "invalid_enum",
    "out_of_range",
    "duplicate_conflict",
    "unknown_reference",
    "lecture_mismatch",
)

# column -> (type, required, enum, (min, max))
SPEC: dict[str, dict[str, tuple]] = {
    "lectures": {
        "lecture_id": ("int", True, None, None),
        "academy_id": ("int", True, None, None),
        "title": ("text", False, None, None),
    },
    "sessions": {
        "session_id": ("int", True, None, None),
        "lecture_id": ("int", True, None, None),
        "session_order": ("int", True, None, (1, None)),
        "title": ("text", False, None, None),
        "session_date": ("date", False, None, None),
    },
    "policies": {
        "lecture_id": ("int", True, None, None),
        "video_required_rate": ("int", False, None, (0, 100)),
        "exam_start_session_order": ("int", False, None, (0, None)),
        "exam_end_session_order": ("int", False, None, (0, None)),
        "exam_pass_score": ("float", False, None, (0, None)),
        "homework_start_session_order": ("int", False, None, (0, None)),
        "homework_end_session_order": ("int", False, None, (0, None)),
        "homework_pass_type": ("text", False, ("SUBMIT", "SCORE", "TEACHER_APPROVAL"), None),
        "homework_pass_score": ("float", False, None, (0, None)),
    },
    "enrollments": {
        "enrollment_id": ("int", True, None, None),
        "lecture_id": ("int", True, None, None),
        "student_id": ("int", True, None, None),
        "status": ("text", False, ("ACTIVE", "DROPPED"), None),
        "enrolled_at": ("ts", False, None, None),
    },
    "attendance": {
        "enrollment_id": ("int", True, None, None),
        "session_id": ("int", True, None, None),
        "attendance_type": ("text", True, ("online", "offline"), None),
        "recorded_at": ("ts", True, None, None),
    },
    "video_progress": {
        "enrollment_id": ("int", True, None, None),
        "session_id": ("int", True, None, None),
        "progress_rate": ("int", True, None, (0, 100)),
        "recorded_at": ("ts", True, None, None),
    },
    "submissions": {
        "submission_id": ("int", True, None, None),
        "enrollment_id": ("int", True, None, None),
        "session_id": ("int", True, None, None),
        "kind": ("text", True, ("exam", "homework"), None),
        "score": ("float", False, None, (0, None)),
        "teacher_approved": ("bool", False, None, None),
        "submitted_at": ("ts", True, None, None),
    },
    "clinic_requests": {
        "enrollment_id": ("int", True, None, None),
        "session_id": ("int", True, None, None),
        "reason": (
            "text",
            True,
            ("AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND"),
            None,
        ),
        "approved": ("bool", False, None, None),
        "memo": ("text", False, None, None),
        "requested_at": ("ts", True, None, None),
    },
    "outcomes": {
        "enrollment_id": ("int", True, None, None),
        "result": ("text", True, ("PASS", "FAIL", "WITHDRAWN"), None),
        "decided_at": ("ts", False, None, None),
    },
}
KEYS = {
    "lectures": ("lecture_id",),
    "sessions": ("session_id",),
    "policies": ("lecture_id",),
    "enrollments": ("enrollment_id",),
    "attendance": ("enrollment_id", "session_id", "recorded_at"),
    "video_progress": ("enrollment_id", "session_id", "recorded_at"),
    "submissions": ("submission_id",),
    "clinic_requests": ("enrollment_id", "session_id", "reason", "requested_at"),
    "outcomes": ("enrollment_id",),
}

TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
SEOUL = dt.timezone(dt.timedelta(hours=9))


def parse_ts(text: str) -> dt.datetime | None:
    """Contract timestamp -> naive Asia/Seoul time, None when invalid."""
    m = TS_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        t = dt.datetime(
            int(y),
            int(mo),
            int(d),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    if off:
        if off == "Z":
            delta = dt.timedelta(0)
        else:
            sign = -1 if off[0] == "-" else 1
            digits = off[1:].replace(":", "")
            delta = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        t = (t.replace(tzinfo=dt.timezone(delta))).astimezone(SEOUL).replace(tzinfo=None)
    return t


# ---------------------------------------------------------------------------------------------
# Reading the landing folder as text, the way the contract describes it.


def table_files(root: Path, table: str) -> list[Path]:
    files = [p for p in root.glob(f"{table}.*") if p.suffix.lower() in (".csv", ".parquet")]
    folder = root / table
    if folder.is_dir():
        files += [
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in (".csv", ".parquet") and not p.name.startswith(".")
        ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_text(root: Path, table: str) -> pl.DataFrame:
    """Every delivered row, every contract column as text, plus its source file."""
    frames = []
    for path in table_files(root, table):
        if path.suffix == ".csv":
            df = pl.read_csv(path, infer_schema=False)
        else:
            df = pl.read_parquet(path)
            exprs = []
            for name, dtype in df.schema.items():
                col = pl.col(name)
                if isinstance(dtype, pl.Datetime):
                    if dtype.time_zone is not None:
                        col = col.dt.convert_time_zone("Asia/Seoul").dt.replace_time_zone(None)
                    col = col.dt.strftime("%Y-%m-%d %H:%M:%S")
                elif dtype == pl.Date:
                    col = col.dt.strftime("%Y-%m-%d")
                else:
                    col = col.cast(pl.String)
                exprs.append(col.alias(name))
            df = df.select(exprs)
        df = df.rename({c: c.strip(" \t\r\n") for c in df.columns})  # names match once trimmed
        frames.append(
            df.select(COLUMNS[table]).with_columns(
                pl.lit(path.relative_to(root).as_posix()).alias("_source_file")
            )
        )
    return pl.concat(frames)


def check(root: Path) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, int]], dict[str, int]]:
    """Apply the contract's checks; return valid parsed rows, quarantine counts and delivered."""
    valid: dict[str, pl.DataFrame] = {}
    quarantine: dict[str, dict[str, int]] = {}
    delivered: dict[str, int] = {}
    for table in TABLES:
        spec = SPEC[table]
        raw = read_text(root, table)
        delivered[table] = raw.height
        text = raw.select(
            [
                pl.col(c).str.strip_chars(" \t\r\n").replace("", None).alias(c)
                for c in COLUMNS[table]
            ]
        ).with_row_index("_row")
        reason = pl.Series("r", [None] * text.height, dtype=pl.String)

        def mark(mask: pl.Series, name: str, reason: pl.Series = reason) -> pl.Series:
            return pl.select(
                pl.when(pl.lit(reason).is_null() & pl.lit(mask).fill_null(False))
                .then(pl.lit(name))
                .otherwise(pl.lit(reason))
            ).to_series()

        missing = pl.Series([False] * text.height, dtype=pl.Boolean)
        for c, (_, req, _, _) in spec.items():
            if req:
                missing = missing | text[c].is_null()
        reason = mark(missing, "missing_value", reason)

        parsed: dict[str, pl.Series] = {}
        bad_type = pl.Series([False] * text.height, dtype=pl.Boolean)
        for c, (typ, _, _, _) in spec.items():
            s = text[c]
            if typ == "int":
                ok = s.str.contains(INT_RE)
                v = s.cast(pl.Int64, strict=False)
                ok = ok & v.is_not_null()
            elif typ == "float":
                ok = s.str.contains(FLOAT_RE)
                v = s.cast(pl.Float64, strict=False)
            elif typ == "bool":
                low = s.str.to_lowercase()
                ok = low.is_in(["true", "false", "1", "0"])
                v = low.is_in(["true", "1"])
            elif typ == "date":
                ok = s.str.contains(r"^\d{4}-\d{2}-\d{2}$")
                v = s.str.to_date("%Y-%m-%d", strict=False)
                ok = ok & v.is_not_null()
            elif typ == "ts":
                uniq = {x: parse_ts(x) for x in s.drop_nulls().unique().to_list()}
                v = pl.Series(
                    [uniq.get(x) if x is not None else None for x in s.to_list()],
                    dtype=pl.Datetime("us"),
                )
                ok = v.is_not_null()
            else:
                ok = pl.Series([True] * text.height, dtype=pl.Boolean)
                v = s
            bad_type = bad_type | (s.is_not_null() & ~ok.fill_null(False))
            parsed[c] = v
        reason = mark(bad_type, "invalid_type", reason)

        bad_enum = pl.Series([False] * text.height, dtype=pl.Boolean)
        bad_range = pl.Series([False] * text.height, dtype=pl.Boolean)
        for c, (_, _, enum, rng) in spec.items():
            if enum:
                bad_enum = bad_enum | (text[c].is_not_null() & ~text[c].is_in(list(enum)))
            if rng:
                lo, hi = rng
                v = parsed[c]
                if lo is not None:
                    bad_range = bad_range | (v < lo).fill_null(False)
                if hi is not None:
                    bad_range = bad_range | (v > hi).fill_null(False)
        reason = mark(bad_enum, "invalid_enum", reason)
        reason = mark(bad_range, "out_of_range", reason)

        typed = pl.DataFrame([parsed[c].alias(c) for c in COLUMNS[table]]).with_columns(
            text["_row"], reason.alias("_reason")
        )
        counts: dict[str, int] = {}
        for r in typed["_reason"].drop_nulls().to_list():
            counts[r] = counts.get(r, 0) + 1
        ok_rows = typed.filter(pl.col("_reason").is_null())
        # exact duplicates collapse; differing rows sharing a key are all quarantined
        distinct = ok_rows.unique(subset=list(COLUMNS[table]), keep="first", maintain_order=True)
        conflict_keys = (
            distinct.group_by(list(KEYS[table])).len().filter(pl.col("len") > 1).drop("len")
        )
        n_conflict = ok_rows.join(conflict_keys, on=list(KEYS[table]), nulls_equal=True).height
        if n_conflict:
            counts["duplicate_conflict"] = n_conflict
        valid[table] = distinct.join(
            conflict_keys, on=list(KEYS[table]), how="anti", nulls_equal=True
        ).drop("_reason")
        quarantine[table] = counts

    def drop_invalid(table: str, ok: pl.Series, name: str) -> None:
        n = int((~ok).sum())
        if n:
            quarantine[table][name] = quarantine[table].get(name, 0) + n
        valid[table] = valid[table].filter(ok)

    lectures = valid["lectures"]["lecture_id"]
    for table in ("sessions", "policies", "enrollments"):
        drop_invalid(
            table, valid[table]["lecture_id"].is_in(lectures.implode()), "unknown_reference"
        )
    sess_lec = valid["sessions"].select("session_id", pl.col("lecture_id").alias("_sl"))
    enr_lec = valid["enrollments"].select("enrollment_id", pl.col("lecture_id").alias("_el"))
    for table in EVENT_TABLES:
        df = (
            valid[table]
            .join(sess_lec, on="session_id", how="left")
            .join(enr_lec, on="enrollment_id", how="left")
        )
        drop_invalid(table, df["_sl"].is_not_null() & df["_el"].is_not_null(), "unknown_reference")
        df = df.filter(pl.col("_sl").is_not_null() & pl.col("_el").is_not_null())
        drop_invalid(table, df["_sl"] == df["_el"], "lecture_mismatch")
    if "outcomes" in valid:
        known = valid["outcomes"]["enrollment_id"].is_in(enr_lec["enrollment_id"].implode())
        drop_invalid("outcomes", known, "unknown_reference")
    return valid, quarantine, delivered


# ---------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("csv")
    return out, generate_extracts(out)


@pytest.fixture(scope="module")
def sample_pq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("pq")
    return out, generate_extracts(out, fmt="parquet")


@pytest.fixture(scope="module")
def checked(sample: tuple[Path, dict[str, int]]):
    return check(sample[0])


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# Tests.


def test_determinism(sample, sample_pq, tmp_path: Path) -> None:
    again = generate_extracts(tmp_path / "again")
    assert again == sample[1]
    assert digest(tmp_path / "again") == digest(sample[0])
    generate_extracts(tmp_path / "again_pq", fmt="parquet")
    assert digest(tmp_path / "again_pq") == digest(sample_pq[0])
    other = generate_extracts(tmp_path / "other", seed=1)
    d0, d1 = digest(sample[0]), digest(tmp_path / "other")
    assert set(d0) == set(d1)
    differing = [f for f in d0 if f.endswith(".csv") and d0[f] != d1[f]]
    assert len(differing) == len([f for f in d0 if f.endswith(".csv")])
    assert other != sample[1]


def test_layout_and_headers(sample, sample_pq) -> None:
    for root, ext in ((sample[0], "csv"), (sample_pq[0], "parquet")):
        for table in TABLES:
            if table in FOLDER_TABLES:
                assert not (root / f"{table}.{ext}").exists()
                parts = sorted((root / table).glob(f"*.{ext}"))
                assert len(parts) >= 3, (table, parts)
            else:
                assert (root / f"{table}.{ext}").is_file()
                parts = table_files(root, table)
            other_layouts = 0
            for part in parts:
                if ext == "csv":
                    head = part.read_bytes().split(b"\n", 1)[0].decode("utf-8").split(",")
                else:
                    head = list(pl.read_parquet_schema(part))
                if head != list(COLUMNS[table]):
                    # another export tool: any order, extra columns, padded names
                    other_layouts += 1
                    assert set(COLUMNS[table]) <= {h.strip() for h in head}, part
                    assert table == "submissions"
            assert other_layouts == (1 if table == "submissions" else 0), (root, table)
        assert set(json.loads((root / "_manifest.json").read_text("utf-8"))["rows"]) == set(TABLES)


def test_csv_is_utf8_lf_and_counts_match_return(sample) -> None:
    root, rows = sample
    for table in TABLES:
        for part in table_files(root, table):
            data = part.read_bytes()
            data.decode("utf-8")
            assert b"\r\n" not in data and not data.startswith(b"\xef\xbb\xbf")
        assert read_text(root, table).height == rows[table], table


def test_csv_and_parquet_same_rows(sample, sample_pq) -> None:
    assert sample[1] == sample_pq[1]
    for table in TABLES:
        assert read_text(sample_pq[0], table).height == sample_pq[1][table]


def test_parquet_native_types_and_row_groups(sample_pq) -> None:
    import pyarrow.parquet as pq

    root = sample_pq[0]
    schema = pl.read_parquet_schema(root / "attendance" / "part-000.parquet")
    assert schema["enrollment_id"].is_integer() and schema["recorded_at"] == pl.Datetime("us")
    schema = pl.read_parquet_schema(root / "submissions" / "part-001.parquet")
    assert schema["score"] == pl.Float64 and schema["teacher_approved"] == pl.Boolean
    assert isinstance(schema["submitted_at"], pl.Datetime)
    assert schema["submitted_at"].time_zone == "UTC"  # a zone-aware drop, converted by readers
    schema = pl.read_parquet_schema(root / "sessions.parquet")
    assert schema["session_date"] == pl.Date and schema["session_order"].is_integer()
    # bad rows live in one small all-text file of the folder
    last = sorted((root / "submissions").glob("*.parquet"))[-1]
    assert set(pl.read_parquet_schema(last).values()) == {pl.String}
    for path in root.rglob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        assert all(meta.row_group(i).num_rows <= 100_000 for i in range(meta.num_row_groups))


def test_parquet_values_equal_csv_values(sample, sample_pq) -> None:
    """Same instants and values whatever the format (offsets, zones and units included)."""
    valid_csv, _, _ = check(sample[0])
    valid_pq, q_pq, _ = check(sample_pq[0])
    for table in TABLES:
        a = valid_csv[table].drop("_row").sort(pl.all())
        b = valid_pq[table].drop("_row").sort(pl.all())
        assert a.equals(b), table


def test_korean_text_round_trip(sample, sample_pq) -> None:
    hangul = re.compile(r"[가-힣]")
    for root in (sample[0], sample_pq[0]):
        lectures = read_text(root, "lectures")
        assert lectures["title"].str.contains("[가-힣]").all()
        assert any(re.search(r"(고|중)[1-3] .*(반|특강)", t) for t in lectures["title"].to_list())
        titles = read_text(root, "sessions")["title"].drop_nulls().to_list()
        assert any(re.match(r"^\d+차시: \S", t) for t in titles)
        memos = read_text(root, "clinic_requests")["memo"].drop_nulls().to_list()
        assert all(hangul.search(m) for m in memos)
        tricky = [m for m in memos if "," in m and "\n" in m]
        assert tricky and any('"' in m for m in memos)
    csv_memos = set(read_text(sample[0], "clinic_requests")["memo"].drop_nulls().str.strip_chars())
    pq_memos = set(
        read_text(sample_pq[0], "clinic_requests")["memo"].drop_nulls().str.strip_chars()
    )
    assert csv_memos == pq_memos


def test_timestamp_forms_in_csv(sample) -> None:
    values = pl.concat(
        [
            read_text(sample[0], t)[c]
            for t, c in (
                ("attendance", "recorded_at"),
                ("submissions", "submitted_at"),
                ("video_progress", "recorded_at"),
            )
        ]
    ).drop_nulls()
    plain = values.str.contains(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    assert plain.mean() > 0.9
    for pattern in (r"Z$", r"\+09:00$", r"\+0900$", r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"):
        assert values.str.contains(pattern).any(), pattern


def test_bad_rows_match_manifest_and_stay_small(sample, checked) -> None:
    root, rows = sample
    _, quarantine, delivered = checked
    manifest = json.loads((root / "_manifest.json").read_text("utf-8"))
    assert quarantine == {t: manifest["expected_quarantine"][t] for t in TABLES}
    seen = {r for counts in quarantine.values() for r in counts}
    assert seen == set(REASONS)
    for table in TABLES:
        assert delivered[table] == rows[table]
        assert sum(quarantine[table].values()) < 0.01 * delivered[table], table
    for table in EVENT_TABLES:
        assert quarantine[table], table
    # exact re-deliveries exist and collapse
    assert all(manifest["collapsed_duplicates"][t] >= 1 for t in EVENT_TABLES)


def test_parquet_bad_rows_same_as_csv(sample_pq, checked) -> None:
    _, quarantine, _ = check(sample_pq[0])
    assert quarantine == checked[1]


def test_no_bad_rows(tmp_path: Path) -> None:
    rows = generate_extracts(tmp_path, enrollments=120, bad_rows=False, fmt="csv")
    _, quarantine, delivered = check(tmp_path)
    assert all(not q for q in quarantine.values()), quarantine
    assert delivered == rows
    manifest = json.loads((tmp_path / "_manifest.json").read_text("utf-8"))
    assert all(not v for v in manifest["expected_quarantine"].values())
    assert all(v == 0 for v in manifest["collapsed_duplicates"].values())


def test_reference_content_is_varied(checked) -> None:
    valid = checked[0]
    lectures, sessions, policies, enr = (
        valid[t] for t in ("lectures", "sessions", "policies", "enrollments")
    )
    assert lectures["academy_id"].n_unique() == 2
    assert lectures.height >= 6
    per_lecture = sessions.group_by("lecture_id").len()["len"]
    assert per_lecture.min() >= 20 and per_lecture.max() <= 35
    ref = dt.date(2026, 11, 25)
    assert (sessions["session_date"] > ref).any() and (sessions["session_date"] <= ref).any()
    assert sessions["session_date"].null_count() >= 1
    # held share varies by lecture
    held = sessions.group_by("lecture_id").agg(
        ((pl.col("session_date") <= ref) | pl.col("session_date").is_null()).mean().alias("h")
    )["h"]
    assert held.min() < 0.7 and held.max() == 1.0
    assert policies.height < lectures.height  # some lectures run on the default policy
    assert set(policies["homework_pass_type"].drop_nulls()) == {
        "SUBMIT",
        "SCORE",
        "TEACHER_APPROVAL",
    }
    score_type = policies.filter(pl.col("homework_pass_type") == "SCORE")["homework_pass_score"]
    assert score_type.null_count() >= 1 and score_type.drop_nulls().len() >= 1
    assert policies.null_count().sum_horizontal().item() > 0
    statuses = enr["status"].to_list()
    assert statuses.count("ACTIVE") > 0.7 * len(statuses)
    assert "DROPPED" in statuses and None in statuses
    # students take several lectures, never one twice
    assert enr["student_id"].n_unique() < enr.height
    assert enr.select("lecture_id", "student_id").is_unique().all()


def test_events_are_varied(checked) -> None:
    valid = checked[0]
    att, vid, sub, cl = (valid[t] for t in EVENT_TABLES)
    assert 0.02 < (att["attendance_type"] == "offline").mean() < 0.5
    assert att.group_by("enrollment_id", "session_id").len()["len"].max() >= 2
    per = vid.group_by("enrollment_id", "session_id").agg(
        pl.len().alias("n"), pl.col("progress_rate").max().alias("mx")
    )
    assert per["n"].mean() > 1.5 and (per["mx"] == 100).mean() > 0.3
    exams = sub.filter(pl.col("kind") == "exam")
    attempts = exams.group_by("enrollment_id", "session_id").len()["len"]
    assert attempts.max() >= 2
    assert exams["score"].null_count() > 0
    hw = sub.filter(pl.col("kind") == "homework")
    assert hw.height > 0 and set(hw["teacher_approved"].to_list()) >= {True, False, None}
    assert sub["submission_id"].is_unique().all()
    reasons = set(cl["reason"])
    assert reasons == {"AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND"}
    auto = cl.filter(pl.col("reason").str.starts_with("AUTO_"))["approved"].to_list()
    assert True in auto and False in auto and None in auto
    # nothing happens after the extract time
    cutoff = dt.datetime(2026, 11, 25, 6, 0)
    for df, col in (
        (att, "recorded_at"),
        (vid, "recorded_at"),
        (sub, "submitted_at"),
        (cl, "requested_at"),
    ):
        assert df[col].max() <= cutoff


def _runs(flags: list[bool]) -> tuple[int, int]:
    """(longest run of True, trailing run of True)."""
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best, cur


def test_risk_relevant_behaviour(checked) -> None:
    valid = checked[0]
    ref = dt.date(2026, 11, 25)
    sessions = valid["sessions"].filter(
        pl.col("session_date").is_null() | (pl.col("session_date") <= ref)
    )
    pairs = (
        valid["enrollments"]
        .join(sessions, on="lecture_id")
        .select("enrollment_id", "session_id", "session_order", "status")
    )
    pass_score = valid["policies"].select("lecture_id", pl.col("exam_pass_score").fill_null(60.0))
    exam = (
        valid["submissions"]
        .filter((pl.col("kind") == "exam") & pl.col("score").is_not_null())
        .sort("submitted_at", "submission_id")
        .group_by("enrollment_id", "session_id")
        .agg(pl.col("score").last())
    )
    active_ids = set()
    for t in ("attendance", "video_progress", "submissions"):
        active_ids |= set(valid[t].select("enrollment_id", "session_id").iter_rows())
    scored = (
        pairs.join(exam, on=["enrollment_id", "session_id"])
        .join(valid["enrollments"].select("enrollment_id", "lecture_id"), on="enrollment_id")
        .join(pass_score, on="lecture_id", how="left")
        .with_columns(pl.col("exam_pass_score").fill_null(60.0))
        .sort("enrollment_id", "session_order")
    )
    low_runs = []
    high_only = 0
    for _, g in scored.group_by("enrollment_id", maintain_order=True):
        low = (g["score"] < g["exam_pass_score"]).to_list()
        low_runs.append(_runs(low))
        high_only += not any(low) and len(low) >= 5
    absent_runs = []
    for (eid, status), g in pairs.sort("enrollment_id", "session_order").group_by(
        "enrollment_id", "status", maintain_order=True
    ):
        flags = [(eid, s) not in active_ids for s in g["session_id"].to_list()]
        absent_runs.append((status, *_runs(flags)))
    assert sum(b >= 3 for b, _ in low_runs) >= 3  # 3 low scores in a row
    assert sum(t >= 2 for _, t in low_runs) >= 2  # ...also at the end: current risk
    assert high_only >= 10  # diligent students pass every exam
    trailing = [t for s, _, t in absent_runs if s != "DROPPED"]
    assert any(t == 2 for t in trailing) and any(t >= 3 for t in trailing)
    assert sum(b >= 4 for _, b, _ in absent_runs) >= 3


def test_progress_and_small_sizes(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    rows = generate_extracts(
        tmp_path / "a", enrollments=1000, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(250, 1000), (500, 1000), (750, 1000), (1000, 1000)]
    assert rows["enrollments"] >= 1000
    for n in (0, 1, 7):
        rows = generate_extracts(tmp_path / f"n{n}", enrollments=n, academies=1, fmt="parquet")
        assert rows["enrollments"] >= n
        check(tmp_path / f"n{n}")


def test_regenerating_replaces_previous_files(tmp_path: Path) -> None:
    generate_extracts(tmp_path, enrollments=400, fmt="csv")
    (tmp_path / "notes.txt").write_text("kept", encoding="utf-8")
    rows = generate_extracts(tmp_path, enrollments=100, fmt="parquet")
    assert not list(tmp_path.rglob("*.csv"))
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "kept"
    assert not (tmp_path / ".clinic_requests.spool").exists()
    assert {t: read_text(tmp_path, t).height for t in TABLES} == rows


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_extracts(tmp_path, fmt="json")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_extracts(tmp_path, academies=0)


def test_outcomes_come_from_their_own_stream(tmp_path: Path) -> None:
    with_outcomes = generate_extracts(tmp_path / "with", enrollments=150, seed=5)
    without = generate_extracts(tmp_path / "without", enrollments=150, seed=5, outcomes=False)
    a, b = digest(tmp_path / "with"), digest(tmp_path / "without")
    assert set(a) - set(b) == {"outcomes.csv"} and set(b) <= set(a)
    assert all(a[f] == b[f] for f in b if f != "_manifest.json")
    assert with_outcomes["outcomes"] > 0 and without["outcomes"] == 0
    assert {t: n for t, n in with_outcomes.items() if t != "outcomes"} == {
        t: n for t, n in without.items() if t != "outcomes"
    }


def test_outcomes_are_decided_after_the_last_session(checked) -> None:
    valid, _, _ = checked
    outcomes = valid["outcomes"].join(valid["enrollments"], on="enrollment_id")
    assert set(outcomes["result"]) == {"PASS", "FAIL", "WITHDRAWN"}
    assert outcomes["decided_at"].null_count() > 0
    last = valid["sessions"].group_by("lecture_id").agg(pl.col("session_date").max())
    decided = outcomes.join(last, on="lecture_id").filter(
        (pl.col("result") != "WITHDRAWN") & pl.col("decided_at").is_not_null()
    )
    assert decided.height and (decided["decided_at"].dt.date() > decided["session_date"]).all()
    assert (outcomes["decided_at"].drop_nulls() <= dt.datetime(2026, 11, 25, 6)).all()
    # a DROPPED enrollment that has an outcome mostly WITHDRAWN
    dropped = outcomes.filter(pl.col("status") == "DROPPED")
    assert (dropped["result"] == "WITHDRAWN").mean() > 0.6


def test_out_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    from pipelines.generate import OutputNotOurs

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "attendance.csv").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputNotOurs, match="not empty"):
        generate_extracts(landing, enrollments=10)
    assert [p.name for p in landing.iterdir()] == ["attendance.csv"]
    # a folder with only hidden files counts as empty; they are left alone
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / ".gitkeep").write_text("", encoding="utf-8")
    generate_extracts(quiet, enrollments=10)
    assert (quiet / ".gitkeep").exists()
    # regenerating removes only the files the previous run listed in its manifest
    (quiet / "attendance" / "part-900.csv").write_text("kept", encoding="utf-8")
    (quiet / "_landing.json").write_text("{}", encoding="utf-8")
    generate_extracts(quiet, enrollments=10, fmt="parquet")
    assert (quiet / "attendance" / "part-900.csv").read_text(encoding="utf-8") == "kept"
    assert (quiet / "_landing.json").exists()
    assert sorted(p.relative_to(quiet).as_posix() for p in quiet.rglob("*.csv")) == [
        "attendance/part-900.csv"
    ]
