"""The original per-event style, replayed: the old Django service's way, on SQLite.

For every incoming event (attendance, video progress, submission, clinic request) in time
order, the service stores the event and then, with row-at-a-time reads and writes, recomputes
that session's progress row, the enrollment's lecture aggregate (walking the lecture's sessions
for the trailing streaks), appends a risk log row when the (level, rule) changed, and creates
or removes the enrollment's clinic links; one transaction per event, as one request would.

It only knows what events told it: a session nobody touched has no progress row (it counts as
not completed in the lecture walk), and no AUTO_FAILED link is raised for it. Where it has a
row, it must agree with the pipeline's marts: `compare_with_marts` checks that after a full
replay (risk_log excepted: the service logs changes as events arrive, not the mart's walk).

Parameters match the pipeline: `as_of` fixes which sessions are held; events after it are not
replayed.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

TS = "%Y-%m-%d %H:%M:%S.%f"  # fixed width: text order is time order
LEVELS = ("NORMAL", "WARNING", "DANGER")
INCOMPLETE, LOW_SCORE = "CONSECUTIVE_INCOMPLETE", "CONSECUTIVE_LOW_SCORE"
SQLITE_PRAGMAS = {"journal_mode": "WAL", "synchronous": "NORMAL"}

SCHEMA = """
CREATE TABLE lectures (lecture_id INTEGER PRIMARY KEY, academy_id INTEGER NOT NULL);
CREATE TABLE sessions (session_id INTEGER PRIMARY KEY, lecture_id INTEGER NOT NULL,
    session_order INTEGER NOT NULL, session_date TEXT);
CREATE INDEX sessions_lecture ON sessions (lecture_id, session_order, session_id);
CREATE TABLE policies (lecture_id INTEGER PRIMARY KEY, video_required_rate INTEGER,
    exam_start_session_order INTEGER, exam_end_session_order INTEGER, exam_pass_score REAL,
    homework_start_session_order INTEGER, homework_end_session_order INTEGER,
    homework_pass_type TEXT, homework_pass_score REAL);
CREATE TABLE enrollments (enrollment_id INTEGER PRIMARY KEY, lecture_id INTEGER NOT NULL,
    student_id INTEGER NOT NULL, status TEXT NOT NULL);
CREATE TABLE attendance (id INTEGER PRIMARY KEY, enrollment_id INTEGER, session_id INTEGER,
    attendance_type TEXT, recorded_at TEXT);
CREATE INDEX attendance_es ON attendance (enrollment_id, session_id, recorded_at);
CREATE TABLE video_progress (id INTEGER PRIMARY KEY, enrollment_id INTEGER, session_id INTEGER,
    progress_rate INTEGER, recorded_at TEXT);
CREATE INDEX video_es ON video_progress (enrollment_id, session_id);
CREATE TABLE submissions (submission_id INTEGER PRIMARY KEY, enrollment_id INTEGER,
    session_id INTEGER, kind TEXT, score REAL, teacher_approved INTEGER, submitted_at TEXT);
CREATE INDEX submissions_es ON submissions (enrollment_id, session_id, kind);
CREATE TABLE clinic_requests (id INTEGER PRIMARY KEY, enrollment_id INTEGER, session_id INTEGER,
    reason TEXT, approved INTEGER, memo TEXT, requested_at TEXT);
CREATE INDEX clinic_requests_key ON clinic_requests (enrollment_id, session_id, reason,
    requested_at);
CREATE TABLE session_progress (enrollment_id INTEGER, session_id INTEGER, lecture_id INTEGER,
    academy_id INTEGER, student_id INTEGER, session_order INTEGER, session_date TEXT,
    held INTEGER, attendance_type TEXT, video_progress_rate INTEGER, video_completed INTEGER,
    exam_applicable INTEGER, exam_score REAL, exam_passed INTEGER, homework_applicable INTEGER,
    homework_submitted INTEGER, homework_passed INTEGER, completed INTEGER, completed_at TEXT,
    calculated_at TEXT, PRIMARY KEY (enrollment_id, session_id));
CREATE TABLE lecture_progress (enrollment_id INTEGER PRIMARY KEY, lecture_id INTEGER,
    academy_id INTEGER, student_id INTEGER, status TEXT, total_sessions INTEGER,
    held_sessions INTEGER, completed_sessions INTEGER, failed_sessions INTEGER,
    completion_rate REAL, consecutive_failed_sessions INTEGER, consecutive_low_scores INTEGER,
    avg_exam_score REAL, risk_level TEXT, risk_rule TEXT, last_session_id INTEGER,
    last_activity_at TEXT, calculated_at TEXT);
CREATE TABLE risk_log (id INTEGER PRIMARY KEY, enrollment_id INTEGER, lecture_id INTEGER,
    academy_id INTEGER, student_id INTEGER, session_id INTEGER, session_order INTEGER,
    session_date TEXT, risk_level TEXT, rule TEXT, streak INTEGER, reason TEXT,
    logged_at TEXT);
CREATE TABLE clinic_links (enrollment_id INTEGER, session_id INTEGER, lecture_id INTEGER,
    academy_id INTEGER, student_id INTEGER, session_order INTEGER, reason TEXT, is_auto INTEGER,
    approved INTEGER, memo TEXT, requested_at TEXT,
    PRIMARY KEY (enrollment_id, session_id, reason));
"""

# (kind, time, tie-break...) rows of the event stream, built in DuckDB from raw.*
EVENT_STREAM = """
SELECT * FROM (
    SELECT 0 AS kind, recorded_at AS event_at, enrollment_id, session_id, attendance_type AS a,
           NULL::DOUBLE AS b, NULL::BOOLEAN AS c, NULL::VARCHAR AS d, NULL::BIGINT AS id
    FROM raw.attendance WHERE recorded_at <= $as_of
    UNION ALL
    SELECT 1, recorded_at, enrollment_id, session_id, NULL, progress_rate, NULL, NULL, NULL
    FROM raw.video_progress WHERE recorded_at <= $as_of
    UNION ALL
    SELECT 2, submitted_at, enrollment_id, session_id, kind, score, teacher_approved, NULL,
           submission_id
    FROM raw.submissions WHERE submitted_at <= $as_of
    UNION ALL
    SELECT 3, requested_at, enrollment_id, session_id, reason, NULL, approved, memo, NULL
    FROM raw.clinic_requests WHERE requested_at <= $as_of
)
ORDER BY event_at, kind, enrollment_id, session_id, id, a
"""


@dataclass
class ReplayResult:
    events_total: int
    events_replayed: int
    seconds: float
    setup_seconds: float
    cpu_seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events_replayed / self.seconds if self.seconds > 0 else 0.0


def _ts(value: datetime | None) -> str | None:
    return value.strftime(TS) if value is not None else None


def _level(streak: int, warning: int, danger: int) -> int:
    return 2 if streak >= danger else 1 if streak >= warning else 0


class PerEventService:
    """The old service: recompute on every event, row at a time, one transaction each."""

    def __init__(
        self, db: sqlite3.Connection, as_of: datetime, warning: int = 2, danger: int = 3
    ) -> None:
        self.db = db
        self.as_of_date = as_of.date().isoformat()
        self.calculated_at = _ts(as_of)
        self.warning, self.danger = warning, danger

    # -- events ---------------------------------------------------------------------------
    def handle(self, event: tuple) -> None:
        kind, at, e, s, a, b, c, d, ident = event
        at_text = _ts(at)
        db = self.db
        if kind == 0:
            db.execute(
                "INSERT INTO attendance (enrollment_id, session_id, attendance_type, "
                "recorded_at) VALUES (?, ?, ?, ?)",
                (e, s, a, at_text),
            )
        elif kind == 1:
            db.execute(
                "INSERT INTO video_progress (enrollment_id, session_id, progress_rate, "
                "recorded_at) VALUES (?, ?, ?, ?)",
                (e, s, int(b), at_text),
            )
        elif kind == 2:
            db.execute(
                "INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ident, e, s, a, b, None if c is None else int(c), at_text),
            )
        else:
            self.clinic_request(e, s, a, c, d, at_text)
            db.commit()
            return
        self.recompute(e, s, at_text)
        db.commit()

    def clinic_request(self, e: int, s: int, reason: str, approved, memo, at: str) -> None:
        db = self.db
        db.execute(
            "INSERT INTO clinic_requests (enrollment_id, session_id, reason, approved, "
            "memo, requested_at) VALUES (?, ?, ?, ?, ?, ?)",
            (e, s, reason, None if approved is None else int(approved), memo, at),
        )
        link = db.execute(
            "SELECT requested_at FROM clinic_links WHERE enrollment_id = ? AND "
            "session_id = ? AND reason = ?",
            (e, s, reason),
        ).fetchone()
        if link is not None:
            if link[0] is None or at >= link[0]:
                db.execute(
                    "UPDATE clinic_links SET approved = ?, memo = ?, requested_at = ? "
                    "WHERE enrollment_id = ? AND session_id = ? AND reason = ?",
                    (int(bool(approved)), memo, at, e, s, reason),
                )
        elif reason in ("MANUAL_REQUEST", "TEACHER_RECOMMEND"):
            self.ensure_link(e, s, reason)

    # -- the recomputation ------------------------------------------------------------------
    def recompute(self, e: int, s: int, at: str) -> None:
        db = self.db
        lecture_id, student_id, status = db.execute(
            "SELECT lecture_id, student_id, status FROM enrollments WHERE enrollment_id = ?", (e,)
        ).fetchone()
        session_order, session_date = db.execute(
            "SELECT session_order, session_date FROM sessions WHERE session_id = ?", (s,)
        ).fetchone()
        (academy_id,) = db.execute(
            "SELECT academy_id FROM lectures WHERE lecture_id = ?", (lecture_id,)
        ).fetchone()
        policy = db.execute(
            "SELECT video_required_rate, exam_start_session_order, exam_end_session_order, "
            "exam_pass_score, homework_start_session_order, homework_end_session_order, "
            "homework_pass_type, homework_pass_score FROM policies WHERE lecture_id = ?",
            (lecture_id,),
        ).fetchone()
        (required, exam_start, exam_end, exam_pass, hw_start, hw_end, pass_type, hw_pass_score) = (
            policy
        )
        held = session_date is None or session_date <= self.as_of_date

        latest = db.execute(
            "SELECT attendance_type, recorded_at FROM attendance WHERE enrollment_id = ? AND "
            "session_id = ? ORDER BY recorded_at DESC LIMIT 1",
            (e, s),
        ).fetchone()
        attendance_type, attendance_at = latest if latest else ("online", None)
        rate, video_at = db.execute(
            "SELECT max(progress_rate), min(CASE WHEN progress_rate >= ? THEN recorded_at END) "
            "FROM video_progress WHERE enrollment_id = ? AND session_id = ?",
            (required, e, s),
        ).fetchone()
        rate = rate or 0
        exam = db.execute(
            "SELECT score, submitted_at FROM submissions WHERE enrollment_id = ? AND "
            "session_id = ? AND kind = 'exam' AND score IS NOT NULL "
            "ORDER BY submitted_at DESC, submission_id DESC LIMIT 1",
            (e, s),
        ).fetchone()
        exam_score, exam_at = exam if exam else (None, None)
        hw_first, hw_approved, hw_scored = db.execute(
            "SELECT min(submitted_at), min(CASE WHEN teacher_approved THEN submitted_at END), "
            "min(CASE WHEN score >= ? THEN submitted_at END) FROM submissions "
            "WHERE enrollment_id = ? AND session_id = ? AND kind = 'homework'",
            (hw_pass_score, e, s),
        ).fetchone()

        offline = attendance_type == "offline"
        video_completed = offline or rate >= required
        exam_applicable = exam_start <= session_order <= exam_end
        exam_passed = (not exam_applicable) or (exam_score is not None and exam_score >= exam_pass)
        hw_applicable = hw_start <= session_order <= hw_end
        if pass_type == "SUBMIT":
            hw_at = hw_first
        elif pass_type == "SCORE" and hw_pass_score is not None:
            hw_at = hw_scored
        else:
            hw_at = hw_approved
        hw_passed = (not hw_applicable) or hw_at is not None
        completed = video_completed and exam_passed and hw_passed
        completed_at = None
        if completed:
            evidence = [
                attendance_at if offline else video_at,
                exam_at if exam_applicable else None,
                hw_at if hw_applicable else None,
            ]
            evidence = [t for t in evidence if t]
            completed_at = max(evidence) if evidence else None
        db.execute(
            "INSERT OR REPLACE INTO session_progress VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e,
                s,
                lecture_id,
                academy_id,
                student_id,
                session_order,
                session_date,
                int(held),
                attendance_type,
                rate,
                int(video_completed),
                int(exam_applicable),
                exam_score,
                int(exam_passed),
                int(hw_applicable),
                int(hw_first is not None),
                int(hw_passed),
                int(completed),
                completed_at,
                self.calculated_at,
            ),
        )
        self.lecture_aggregate(e, lecture_id, academy_id, student_id, status, exam_pass, at)
        if held and status == "ACTIVE":
            if completed:
                db.execute(
                    "DELETE FROM clinic_links WHERE enrollment_id = ? AND session_id = ? "
                    "AND reason = 'AUTO_FAILED'",
                    (e, s),
                )
            else:
                self.ensure_link(e, s, "AUTO_FAILED")

    def lecture_aggregate(
        self,
        e: int,
        lecture_id: int,
        academy_id: int,
        student_id: int,
        status: str,
        exam_pass: float,
        at: str,
    ) -> None:
        db = self.db
        rows = db.execute(
            "SELECT s.session_id, s.session_order, s.session_date, p.completed, "
            "p.exam_applicable, p.exam_score FROM sessions s LEFT JOIN session_progress p "
            "ON p.enrollment_id = ? AND p.session_id = s.session_id WHERE s.lecture_id = ? "
            "ORDER BY s.session_order, s.session_id",
            (e, lecture_id),
        ).fetchall()
        previous = db.execute(
            "SELECT risk_level, risk_rule, last_activity_at FROM lecture_progress "
            "WHERE enrollment_id = ?",
            (e,),
        ).fetchone()
        held_n = completed_n = failed_n = fail_streak = low_streak = 0
        scores: list[float] = []
        last = None
        for session_id, order, day, completed, applicable, score in rows:
            if completed:
                completed_n += 1
            if not (day is None or day <= self.as_of_date):
                continue
            held_n += 1
            last = (session_id, order, day)
            fail_streak = 0 if completed else fail_streak + 1
            if applicable and score is not None:
                scores.append(score)
                low_streak = 0 if score >= exam_pass else low_streak + 1
            if not completed:
                failed_n += 1
        active = status == "ACTIVE"
        fail_level = _level(fail_streak, self.warning, self.danger)
        low_level = _level(low_streak, self.warning, self.danger)
        level = max(fail_level, low_level) if active else 0
        rule = None if level == 0 else LOW_SCORE if low_level == level else INCOMPLETE
        total = len(rows)
        last_activity = max(at, previous[2]) if previous and previous[2] else at
        db.execute(
            "INSERT OR REPLACE INTO lecture_progress VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e,
                lecture_id,
                academy_id,
                student_id,
                status,
                total,
                held_n,
                completed_n,
                failed_n,
                completed_n / total if total else 0.0,
                fail_streak,
                low_streak,
                sum(scores) / len(scores) if scores else None,
                LEVELS[level],
                rule,
                last[0] if last else None,
                last_activity,
                self.calculated_at,
            ),
        )
        before = previous[:2] if previous else ("NORMAL", None)
        if level > 0 and (LEVELS[level], rule) != tuple(before) and last is not None:
            streak = low_streak if rule == LOW_SCORE else fail_streak
            reason = f"연속 {streak}회 저점수" if rule == LOW_SCORE else f"연속 {streak}차시 미완료"
            db.execute(
                "INSERT INTO risk_log (enrollment_id, lecture_id, academy_id, student_id, "
                "session_id, session_order, session_date, risk_level, rule, streak, reason, "
                "logged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e,
                    lecture_id,
                    academy_id,
                    student_id,
                    last[0],
                    last[1],
                    last[2],
                    LEVELS[level],
                    rule,
                    streak,
                    reason,
                    at,
                ),
            )
        if active and level > 0:
            db.execute(
                "DELETE FROM clinic_links WHERE enrollment_id = ? AND "
                "reason = 'AUTO_RISK' AND session_id <> ?",
                (e, last[0]),
            )
            self.ensure_link(e, last[0], "AUTO_RISK")
        else:
            db.execute(
                "DELETE FROM clinic_links WHERE enrollment_id = ? AND reason = 'AUTO_RISK'", (e,)
            )

    def ensure_link(self, e: int, s: int, reason: str) -> None:
        db = self.db
        exists = db.execute(
            "SELECT 1 FROM clinic_links WHERE enrollment_id = ? AND session_id = ? AND reason = ?",
            (e, s, reason),
        ).fetchone()
        if exists:
            return
        lecture_id, student_id = db.execute(
            "SELECT lecture_id, student_id FROM enrollments WHERE enrollment_id = ?", (e,)
        ).fetchone()
        (academy_id,) = db.execute(
            "SELECT academy_id FROM lectures WHERE lecture_id = ?", (lecture_id,)
        ).fetchone()
        (order,) = db.execute(
            "SELECT session_order FROM sessions WHERE session_id = ?", (s,)
        ).fetchone()
        decision = db.execute(
            "SELECT approved, memo, requested_at FROM clinic_requests WHERE enrollment_id = ? "
            "AND session_id = ? AND reason = ? ORDER BY requested_at DESC LIMIT 1",
            (e, s, reason),
        ).fetchone()
        approved, memo, requested_at = decision if decision else (0, None, None)
        db.execute(
            "INSERT INTO clinic_links VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e,
                s,
                lecture_id,
                academy_id,
                student_id,
                order,
                reason,
                int(reason.startswith("AUTO_")),
                int(bool(approved)),
                memo,
                requested_at,
            ),
        )


def _load_reference(duck: duckdb.DuckDBPyConnection, db: sqlite3.Connection) -> None:
    """The service's reference tables (policies resolved to defaults, as the service did)."""
    db.executescript(SCHEMA)
    db.executemany(
        "INSERT INTO lectures VALUES (?, ?)",
        duck.execute("SELECT lecture_id, academy_id FROM raw.lectures").fetchall(),
    )
    sessions = duck.execute(
        "SELECT session_id, lecture_id, session_order, strftime(session_date, '%Y-%m-%d') "
        "FROM raw.sessions"
    ).fetchall()
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", sessions)
    db.executemany(
        "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        duck.execute(
            "SELECT l.lecture_id, coalesce(video_required_rate, 90), "
            "coalesce(exam_start_session_order, 2), coalesce(exam_end_session_order, 9999), "
            "coalesce(exam_pass_score, 60.0), coalesce(homework_start_session_order, 2), "
            "coalesce(homework_end_session_order, 9999), "
            "coalesce(homework_pass_type, 'TEACHER_APPROVAL'), homework_pass_score "
            "FROM raw.lectures l LEFT JOIN raw.policies p USING (lecture_id)"
        ).fetchall(),
    )
    db.executemany(
        "INSERT INTO enrollments VALUES (?, ?, ?, ?)",
        duck.execute(
            "SELECT enrollment_id, lecture_id, student_id, coalesce(status, 'ACTIVE') "
            "FROM raw.enrollments"
        ).fetchall(),
    )
    db.commit()


def replay(
    warehouse: Path,
    sqlite_path: Path,
    as_of: datetime,
    max_events: int | None = None,
    warning: int = 2,
    danger: int = 3,
) -> ReplayResult:
    """Replay the first `max_events` events (all when None) in time order; time the loop."""
    start = time.perf_counter()
    sqlite_path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
    db = sqlite3.connect(str(sqlite_path))
    for pragma, value in SQLITE_PRAGMAS.items():
        db.execute(f"PRAGMA {pragma} = {value}")
    with duckdb.connect(str(warehouse), read_only=True) as duck:
        _load_reference(duck, db)
        params = {"as_of": as_of}
        (total,) = duck.execute(f"SELECT count(*) FROM ({EVENT_STREAM})", params).fetchone()
        limit = f" LIMIT {int(max_events)}" if max_events is not None else ""
        events = duck.execute(EVENT_STREAM + limit, params).fetchall()
    service = PerEventService(db, as_of, warning, danger)
    setup = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for event in events:
        service.handle(event)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    db.close()
    return ReplayResult(total, len(events), seconds, setup, cpu)


# -- agreement with the pipeline's marts ------------------------------------------------------
COMPARED = {
    "session_progress": ["enrollment_id", "session_id"],
    "lecture_progress": ["enrollment_id"],
    "clinic_links": ["enrollment_id", "session_id", "reason"],
}


def _sqlite_frame(db: sqlite3.Connection, table: str, like: pl.DataFrame) -> pl.DataFrame:
    cursor = db.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cursor.description]
    frame = pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)
    columns = []
    for name in like.columns:
        dtype = like.schema[name]
        col = pl.col(name)
        if dtype == pl.Boolean:
            col = col.cast(pl.Int64).cast(pl.Boolean)
        elif dtype == pl.Date:
            col = col.cast(pl.String).str.to_date("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            col = col.cast(pl.String).str.to_datetime(
                "%Y-%m-%d %H:%M:%S%.f", time_unit=dtype.time_unit
            )
        else:
            col = col.cast(dtype)
        columns.append(col.alias(name))
    return frame.select(columns)


def compare_with_marts(warehouse: Path, sqlite_path: Path) -> dict[str, int]:
    """After a full replay: every row the service has equals the pipeline's row.

    session_progress and lecture_progress rows the service wrote; clinic_links for the
    (enrollment, session) pairs it saw events for (AUTO_FAILED), the enrollments it aggregated
    (AUTO_RISK) and every manual request. Float columns compared to 1e-6. Raises AssertionError.
    """
    db = sqlite3.connect(str(sqlite_path))
    compared: dict[str, int] = {}
    with duckdb.connect(str(warehouse), read_only=True) as duck:
        for table, key in COMPARED.items():
            mart = duck.sql(f"SELECT * FROM marts.{table}").pl()
            ours = _sqlite_frame(db, table, mart)
            if table == "clinic_links":
                touched = _sqlite_frame(
                    db,
                    "session_progress",
                    duck.sql(
                        "SELECT enrollment_id, session_id FROM marts.session_progress LIMIT 0"
                    ).pl(),
                )
                aggregated = _sqlite_frame(
                    db,
                    "lecture_progress",
                    duck.sql("SELECT enrollment_id FROM marts.lecture_progress LIMIT 0").pl(),
                )
                mart = pl.concat(
                    [
                        mart.filter(pl.col("reason") == "AUTO_FAILED").join(
                            touched, on=["enrollment_id", "session_id"], how="semi"
                        ),
                        mart.filter(pl.col("reason") == "AUTO_RISK").join(
                            aggregated, on="enrollment_id", how="semi"
                        ),
                        mart.filter(~pl.col("reason").str.starts_with("AUTO_")),
                    ]
                )
            else:
                mart = mart.join(ours.select(key), on=key, how="semi")
            drop = [c for c in ("calculated_at",) if c in mart.columns]
            a, b = (f.drop(drop).sort(key) for f in (mart, ours))
            floats = [c for c, t in a.schema.items() if t.is_float()]
            a = a.with_columns(pl.col(floats).round(6))
            b = b.with_columns(pl.col(floats).round(6))
            if not a.equals(b):
                diff = a.join(b, on=a.columns, how="anti", nulls_equal=True).head(3)
                extra = b.join(a, on=a.columns, how="anti", nulls_equal=True).head(3)
                raise AssertionError(
                    f"per-event {table} differs from marts.{table} "
                    f"({a.height} vs {b.height} rows): pipeline-only "
                    f"{diff.to_dicts()} service-only {extra.to_dicts()}"
                )
            compared[table] = b.height
    db.close()
    return compared
