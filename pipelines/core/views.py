"""Analyst views over the marts (issue 6): at-risk students, lecture summary, session funnel,
clinic queue.

Each view is plain SQL over `marts.*` (plus the titles in `raw.lectures` / `raw.sessions`), with
Korean labels joined from `marts.dim_labels` and a `COMMENT ON` for the view and every column, so
`duckdb_views()` / `duckdb_columns()` document them like the tables. Every time-relative figure
(days since the last activity, days waiting) is computed against the marts' `calculated_at`
(the run's as-of), never against the wall clock, so a view returns the same rows for the same
warehouse whenever it is queried.

`create_views(con)` (re)creates all four in one transaction. The same SQL is used by the
exports and the HTML report (`view_query`), so they work even on a warehouse whose views were
never created, and always agree with this module.

No orchestration dependency: only DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from .vocabulary import FLAGGED_LEVELS, INCOMPLETE, LOW_SCORE, REASON_TEMPLATES, level_rank_sql
from .warehouse import TableDoc, column_names, document_table, ident, literal, target, transaction

SCHEMA = "marts"

_AS_OF = (
    "The marts' calculated_at: the run's as-of instant, naive local time in the pipeline's zone "
    "(default Asia/Seoul)."
)
_LECTURE_TITLE = (
    "Lecture title from raw.lectures (the latest valid extract); null when not delivered."
)
_SESSION_TITLE = (
    "Session title from raw.sessions (the latest valid extract); null when not delivered."
)


@dataclass(frozen=True)
class View:
    """One analyst view: its SELECT (without ORDER BY), row order, description and columns."""

    name: str
    select: str
    order_by: str
    description: str
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def sql(self) -> str:
        """The view's full query, ordered."""
        return f"{self.select.rstrip()}\nORDER BY {self.order_by}"


def _label(alias: str, domain: str, code: str) -> str:
    """LEFT JOIN of dim_labels for one enum column."""
    return (
        f"LEFT JOIN marts.dim_labels AS {alias} "
        f"ON {alias}.domain = '{domain}' AND {alias}.code = {code}"
    )


_STREAK = (
    f"CASE lp.risk_rule WHEN '{LOW_SCORE}' THEN lp.consecutive_low_scores "
    "ELSE lp.consecutive_failed_sessions END"
)

AT_RISK = View(
    name="v_at_risk_students",
    select=f"""
WITH last_change AS (
    SELECT enrollment_id, session_order AS risk_since_session_order,
           session_date AS risk_since_session_date
    FROM marts.risk_log
    QUALIFY row_number() OVER (
        PARTITION BY enrollment_id ORDER BY session_order DESC, session_id DESC) = 1
)
SELECT
    lp.academy_id,
    lp.lecture_id,
    lec.title AS lecture_title,
    lp.enrollment_id,
    lp.student_id,
    lp.risk_level,
    rl.label_ko AS risk_level_ko,
    lp.risk_rule,
    rr.label_ko AS risk_rule_ko,
    {_STREAK} AS streak,
    CASE lp.risk_rule
        WHEN '{LOW_SCORE}' THEN format('{REASON_TEMPLATES[LOW_SCORE]}', {_STREAK})
        ELSE format('{REASON_TEMPLATES[INCOMPLETE]}', {_STREAK})
    END AS reason,
    lc.risk_since_session_order,
    lc.risk_since_session_date,
    lp.consecutive_failed_sessions,
    lp.consecutive_low_scores,
    lp.held_sessions,
    lp.completed_sessions,
    lp.failed_sessions,
    lp.completion_rate,
    lp.avg_exam_score,
    lp.last_session_id,
    sp.session_order AS last_session_order,
    ses.title AS last_session_title,
    sp.session_date AS last_session_date,
    lp.last_activity_at,
    date_diff('day', CAST(lp.last_activity_at AS DATE), CAST(lp.calculated_at AS DATE))
        AS days_since_last_activity,
    lp.calculated_at
FROM marts.lecture_progress AS lp
LEFT JOIN last_change AS lc ON lc.enrollment_id = lp.enrollment_id
LEFT JOIN marts.session_progress AS sp
    ON sp.enrollment_id = lp.enrollment_id AND sp.session_id = lp.last_session_id
LEFT JOIN raw.lectures AS lec ON lec.lecture_id = lp.lecture_id
LEFT JOIN raw.sessions AS ses ON ses.session_id = lp.last_session_id
{_label("rl", "risk_level", "lp.risk_level")}
{_label("rr", "risk_rule", "lp.risk_rule")}
WHERE lp.risk_level IN ({", ".join(map(literal, FLAGGED_LEVELS))})
""",
    order_by=(
        "(risk_level = 'DANGER') DESC, streak DESC, days_since_last_activity DESC NULLS FIRST, "
        "academy_id, lecture_id, enrollment_id"
    ),
    description=(
        "Students who need attention now: one row per ACTIVE enrollment whose current risk "
        "level (marts.lecture_progress, as of calculated_at) is WARNING or DANGER, unique on "
        "enrollment_id; DANGER first, then the longest streak, then the longest silence. Korean "
        "labels from marts.dim_labels; titles from raw.lectures / raw.sessions."
    ),
    columns={
        "academy_id": "Academy (tenant) running the lecture.",
        "lecture_id": "Lecture of the enrollment.",
        "lecture_title": _LECTURE_TITLE,
        "enrollment_id": "Enrollment (a student in one lecture); unique in this view.",
        "student_id": "Student of the enrollment.",
        "risk_level": "WARNING or DANGER (lecture_progress.risk_level).",
        "risk_level_ko": "Korean label of risk_level (주의 / 위험), from marts.dim_labels.",
        "risk_rule": (
            "Cause of the level (lecture_progress.risk_rule): CONSECUTIVE_INCOMPLETE or "
            "CONSECUTIVE_LOW_SCORE."
        ),
        "risk_rule_ko": "Korean label of risk_rule (연속 미완료 / 연속 저점수), from marts.dim_labels.",
        "streak": (
            "Current length of the streak of the rule: consecutive_low_scores for "
            "CONSECUTIVE_LOW_SCORE, else consecutive_failed_sessions."
        ),
        "reason": (
            "Display text as in marts.risk_log: 연속 {streak}차시 미완료 for "
            "CONSECUTIVE_INCOMPLETE, 연속 {streak}회 저점수 for CONSECUTIVE_LOW_SCORE."
        ),
        "risk_since_session_order": (
            "session_order of the enrollment's latest marts.risk_log row: the held session after "
            "which the current (level, rule) began."
        ),
        "risk_since_session_date": (
            "session_date of that risk_log row; null when the session has no date."
        ),
        "consecutive_failed_sessions": "lecture_progress.consecutive_failed_sessions.",
        "consecutive_low_scores": "lecture_progress.consecutive_low_scores.",
        "held_sessions": "Sessions of the lecture held as of calculated_at.",
        "completed_sessions": "Sessions of the lecture the enrollment completed.",
        "failed_sessions": "Held sessions the enrollment has not completed.",
        "completion_rate": "completed_sessions / total sessions of the lecture, 0..1.",
        "avg_exam_score": (
            "Mean counted exam score over held exam sessions; null when there is none."
        ),
        "last_session_id": "The last held session of the lecture (lecture_progress).",
        "last_session_order": "session_order of last_session_id.",
        "last_session_title": _SESSION_TITLE,
        "last_session_date": "session_date of last_session_id; null when it has no date.",
        "last_activity_at": (
            "The enrollment's latest attendance, video or submission timestamp up to "
            "calculated_at; null when none."
        ),
        "days_since_last_activity": (
            "Calendar days from the date of last_activity_at to the date of calculated_at (the "
            "marts' as-of, NOT today's date), so the value is reproducible for a given run; null "
            "when the enrollment has no activity at all."
        ),
        "calculated_at": _AS_OF,
    },
)

LECTURE_SUMMARY = View(
    name="v_lecture_summary",
    select="""
WITH enrollment AS (
    SELECT
        academy_id,
        lecture_id,
        count(*) AS enrollments,
        count(*) FILTER (WHERE status = 'ACTIVE') AS active_enrollments,
        count(*) FILTER (WHERE status = 'DROPPED') AS dropped_enrollments,
        max(total_sessions) AS total_sessions,
        max(held_sessions) AS held_sessions,
        avg(completion_rate) FILTER (WHERE status = 'ACTIVE') AS avg_completion_rate,
        avg(avg_exam_score) FILTER (WHERE status = 'ACTIVE') AS avg_exam_score,
        count(*) FILTER (WHERE status = 'ACTIVE' AND risk_level = 'NORMAL') AS normal_enrollments,
        count(*) FILTER (WHERE risk_level = 'WARNING') AS warning_enrollments,
        count(*) FILTER (WHERE risk_level = 'DANGER') AS danger_enrollments,
        max(calculated_at) AS calculated_at
    FROM marts.lecture_progress
    GROUP BY academy_id, lecture_id
),
held AS (
    SELECT
        sp.lecture_id,
        count(*) FILTER (WHERE sp.held) AS held_slots,
        count(*) FILTER (WHERE sp.held AND sp.completed) AS held_completed
    FROM marts.session_progress AS sp
    JOIN marts.lecture_progress AS lp ON lp.enrollment_id = sp.enrollment_id
    WHERE lp.status = 'ACTIVE'
    GROUP BY sp.lecture_id
),
clinic AS (
    SELECT
        lecture_id,
        count(*) AS clinic_links,
        count(*) FILTER (WHERE NOT approved) AS clinic_pending
    FROM marts.clinic_links
    GROUP BY lecture_id
)
SELECT
    e.academy_id,
    e.lecture_id,
    lec.title AS lecture_title,
    e.enrollments,
    e.active_enrollments,
    e.dropped_enrollments,
    e.total_sessions,
    e.held_sessions,
    e.avg_completion_rate,
    CAST(h.held_completed AS DOUBLE) / nullif(h.held_slots, 0) AS held_completion_rate,
    e.avg_exam_score,
    e.normal_enrollments,
    e.warning_enrollments,
    e.danger_enrollments,
    CAST(e.warning_enrollments + e.danger_enrollments AS DOUBLE)
        / nullif(e.active_enrollments, 0) AS at_risk_share,
    coalesce(c.clinic_links, 0) AS clinic_links,
    coalesce(c.clinic_pending, 0) AS clinic_pending,
    e.calculated_at
FROM enrollment AS e
LEFT JOIN held AS h ON h.lecture_id = e.lecture_id
LEFT JOIN clinic AS c ON c.lecture_id = e.lecture_id
LEFT JOIN raw.lectures AS lec ON lec.lecture_id = e.lecture_id
""",
    order_by="academy_id, lecture_id",
    description=(
        "One row per lecture that has at least one enrollment (any status), unique on "
        "lecture_id: enrollments, completion, risk counts and clinic links pending approval, "
        "as of calculated_at. Risk counts cover ACTIVE enrollments only (others are always "
        "NORMAL), so normal + warning + danger = active_enrollments."
    ),
    columns={
        "academy_id": "Academy (tenant) running the lecture.",
        "lecture_id": "Lecture; unique in this view.",
        "lecture_title": _LECTURE_TITLE,
        "enrollments": "Enrollments of the lecture, any status.",
        "active_enrollments": "Enrollments with status ACTIVE (수강중; a null status counts as ACTIVE).",
        "dropped_enrollments": "Enrollments with status DROPPED (수강취소).",
        "total_sessions": "Sessions of the lecture, held or not.",
        "held_sessions": "Sessions of the lecture held as of calculated_at.",
        "avg_completion_rate": (
            "Mean of lecture_progress.completion_rate (completed / total sessions, 0..1) over "
            "ACTIVE enrollments; null when there is none. Sessions not yet held lower it."
        ),
        "held_completion_rate": (
            "Completed held sessions / held sessions, over ACTIVE enrollments' session_progress "
            "rows, 0..1: how well the sessions held so far went; null when none is held."
        ),
        "avg_exam_score": (
            "Mean of the ACTIVE enrollments' avg_exam_score (enrollments without a counted score "
            "are left out); null when there is none."
        ),
        "normal_enrollments": "ACTIVE enrollments at risk level NORMAL (정상).",
        "warning_enrollments": "Enrollments at risk level WARNING (주의); always ACTIVE.",
        "danger_enrollments": "Enrollments at risk level DANGER (위험); always ACTIVE.",
        "at_risk_share": (
            "(warning_enrollments + danger_enrollments) / active_enrollments, 0..1; null when "
            "there is no ACTIVE enrollment."
        ),
        "clinic_links": "Rows of marts.clinic_links for the lecture (every reason and status).",
        "clinic_pending": (
            "Clinic links of the lecture not approved yet (approved is false): its rows in "
            "marts.v_clinic_queue."
        ),
        "calculated_at": _AS_OF,
    },
)

SESSION_FUNNEL = View(
    name="v_session_funnel",
    select="""
WITH grid AS (
    SELECT sp.*, lp.status = 'ACTIVE' AS active
    FROM marts.session_progress AS sp
    JOIN marts.lecture_progress AS lp ON lp.enrollment_id = sp.enrollment_id
),
funnel AS (
    SELECT
        academy_id,
        lecture_id,
        session_id,
        session_order,
        session_date,
        held,
        exam_applicable,
        homework_applicable,
        count(*) FILTER (WHERE active) AS active_enrollments,
        count(*) FILTER (WHERE active AND video_completed) AS video_completed_count,
        count(*) FILTER (WHERE active AND exam_passed) AS exam_passed_count,
        count(*) FILTER (WHERE active AND homework_passed) AS homework_passed_count,
        count(*) FILTER (WHERE active AND completed) AS completed_count,
        max(calculated_at) AS calculated_at
    FROM grid
    GROUP BY ALL
),
shares AS (
    SELECT
        *,
        CAST(video_completed_count AS DOUBLE) / nullif(active_enrollments, 0)
            AS video_completed_share,
        CAST(exam_passed_count AS DOUBLE) / nullif(active_enrollments, 0) AS exam_passed_share,
        CAST(homework_passed_count AS DOUBLE) / nullif(active_enrollments, 0)
            AS homework_passed_share,
        CAST(completed_count AS DOUBLE) / nullif(active_enrollments, 0) AS completed_share
    FROM funnel
)
SELECT
    s.academy_id,
    s.lecture_id,
    lec.title AS lecture_title,
    s.session_id,
    s.session_order,
    ses.title AS session_title,
    s.session_date,
    s.held,
    s.exam_applicable,
    s.homework_applicable,
    s.active_enrollments,
    s.video_completed_count,
    s.exam_passed_count,
    s.homework_passed_count,
    s.completed_count,
    s.video_completed_share,
    s.exam_passed_share,
    s.homework_passed_share,
    s.completed_share,
    lag(s.completed_share) OVER (
        PARTITION BY s.lecture_id ORDER BY s.session_order, s.session_id)
        - s.completed_share AS completed_share_drop,
    s.calculated_at
FROM shares AS s
LEFT JOIN raw.lectures AS lec ON lec.lecture_id = s.lecture_id
LEFT JOIN raw.sessions AS ses ON ses.session_id = s.session_id
""",
    order_by="academy_id, lecture_id, session_order, session_id",
    description=(
        "The completion funnel: one row per session of a lecture that has enrollments, unique "
        "on session_id, in (session_order, session_id) order: how many ACTIVE enrollments "
        "completed the video, passed the exam, passed the homework and completed the session "
        "(marts.session_progress as of calculated_at), as counts and shares. Sessions not held "
        "yet are included (held = false); filter on held for the sessions so far."
    ),
    columns={
        "academy_id": "Academy (tenant) running the lecture.",
        "lecture_id": "Lecture of the session.",
        "lecture_title": _LECTURE_TITLE,
        "session_id": "Session (차시); unique in this view.",
        "session_order": "Position of the session in its lecture (>= 1).",
        "session_title": _SESSION_TITLE,
        "session_date": "Planned date of the session; null means it counts as held.",
        "held": "True when session_date is null or on or before the date of calculated_at.",
        "exam_applicable": (
            "True when the session is in the policy's exam window; when false exam_passed is "
            "true for everyone (the session has no exam)."
        ),
        "homework_applicable": (
            "True when the session is in the policy's homework window; when false "
            "homework_passed is true for everyone."
        ),
        "active_enrollments": (
            "ACTIVE enrollments of the lecture: the denominator of every share (dropped "
            "enrollments are left out)."
        ),
        "video_completed_count": "ACTIVE enrollments with video_completed for the session.",
        "exam_passed_count": (
            "ACTIVE enrollments with exam_passed (true when the exam is not applicable)."
        ),
        "homework_passed_count": (
            "ACTIVE enrollments with homework_passed (true when homework is not applicable)."
        ),
        "completed_count": "ACTIVE enrollments that completed the session (all three passed).",
        "video_completed_share": "video_completed_count / active_enrollments, 0..1; null when 0.",
        "exam_passed_share": "exam_passed_count / active_enrollments, 0..1; null when 0.",
        "homework_passed_share": "homework_passed_count / active_enrollments, 0..1; null when 0.",
        "completed_share": "completed_count / active_enrollments, 0..1; null when 0.",
        "completed_share_drop": (
            "completed_share of the previous session of the lecture (by session_order, "
            "session_id) minus this session's: positive when this session loses students; null "
            "for the first session."
        ),
        "calculated_at": _AS_OF,
    },
)


# Every clinic link with its labels and waiting time; v_clinic_queue keeps the ones not approved,
# the report's per-student queue (CLINIC_BY_STUDENT) also counts the approved ones. `links` is
# where the clinic_links rows come from (the report narrows it to the students it shows).
def _clinic_link_rows(links: str = "marts.clinic_links") -> str:
    return f"""
SELECT
    cl.academy_id,
    cl.lecture_id,
    lec.title AS lecture_title,
    cl.enrollment_id,
    cl.student_id,
    lp.status,
    st.label_ko AS status_ko,
    cl.session_id,
    cl.session_order,
    ses.title AS session_title,
    ses.session_date,
    cl.reason,
    cr.label_ko AS reason_ko,
    cl.is_auto,
    cl.approved,
    cl.memo,
    cl.requested_at,
    least(CAST(ses.session_date AS TIMESTAMP), cl.requested_at) AS queued_since,
    date_diff('day', CAST(least(CAST(ses.session_date AS TIMESTAMP), cl.requested_at) AS DATE),
              CAST(lp.calculated_at AS DATE)) AS days_waiting,
    lp.risk_level,
    rl.label_ko AS risk_level_ko,
    lp.calculated_at
FROM {links} AS cl
LEFT JOIN marts.lecture_progress AS lp ON lp.enrollment_id = cl.enrollment_id
LEFT JOIN raw.lectures AS lec ON lec.lecture_id = cl.lecture_id
LEFT JOIN raw.sessions AS ses ON ses.session_id = cl.session_id
{_label("cr", "clinic_reason", "cl.reason")}
{_label("st", "enrollment_status", "lp.status")}
{_label("rl", "risk_level", "lp.risk_level")}
"""


_CLINIC_LINK_ROWS = _clinic_link_rows()

CLINIC_QUEUE = View(
    name="v_clinic_queue",
    select=f"""
SELECT * EXCLUDE (approved)
FROM ({_CLINIC_LINK_ROWS}) AS links
WHERE NOT approved
""",
    order_by=(
        "queued_since NULLS LAST, academy_id, lecture_id, session_order, enrollment_id, reason"
    ),
    description=(
        "Clinic links not approved yet (marts.clinic_links with approved false), oldest first: "
        "one row per (enrollment_id, session_id, reason), with the Korean reason label, the "
        "staff memo and how long the link has been waiting as of calculated_at."
    ),
    columns={
        "academy_id": "Academy (tenant) running the lecture.",
        "lecture_id": "Lecture of the enrollment.",
        "lecture_title": _LECTURE_TITLE,
        "enrollment_id": "Enrollment the clinic is for.",
        "student_id": "Student of the enrollment.",
        "status": (
            "Enrollment status (ACTIVE or DROPPED); manual requests and teacher "
            "recommendations are kept whatever the status."
        ),
        "status_ko": "Korean label of status (수강중 / 수강취소), from marts.dim_labels.",
        "session_id": "Session the clinic is for.",
        "session_order": "Position of the session in its lecture (>= 1).",
        "session_title": _SESSION_TITLE,
        "session_date": "Planned date of the session; null when it has no date.",
        "reason": "AUTO_FAILED, AUTO_RISK, MANUAL_REQUEST or TEACHER_RECOMMEND.",
        "reason_ko": (
            "Korean label of reason (e.g. 자동(차시 미통과), 강사 추천), from marts.dim_labels."
        ),
        "is_auto": "True for AUTO_FAILED / AUTO_RISK (derived by the pipeline).",
        "memo": "memo of the latest matching clinic request; null when none.",
        "requested_at": "requested_at of the latest matching clinic request; null when none.",
        "queued_since": (
            "When the need arose: the earlier of the session's date (at midnight) and "
            "requested_at; null when both are null (such rows are listed last)."
        ),
        "days_waiting": (
            "Calendar days from the date of queued_since to the date of calculated_at (the "
            "marts' as-of, not today's date); null when queued_since is null."
        ),
        "risk_level": "Current risk level of the enrollment (lecture_progress.risk_level).",
        "risk_level_ko": "Korean label of risk_level (정상 / 주의 / 위험), from marts.dim_labels.",
        "calculated_at": _AS_OF,
    },
)


# A session held on the as-of date is still in progress: students finish it during the day.
# The report shows it so (display rule; the marts keep it as held and not completed, §4).
def _today(alias: str = "") -> str:
    """True when the session is held on the as-of date (null when it has no date)."""
    return f"{alias}session_date = CAST({alias}calculated_at AS DATE)"


def clinic_by_student_select(
    links: str = "marts.clinic_links", progress: str = "marts.session_progress"
) -> str:
    """CLINIC_BY_STUDENT's SELECT over the clinic_links rows `links` and the session_progress
    rows `progress` (the report passes those of the students it shows)."""
    return f"""
WITH links AS (
    SELECT *, reason = 'AUTO_FAILED' AND coalesce({_today()}, false) AS in_progress
    FROM ({_clinic_link_rows(links)}) AS l
),
failures AS (
    SELECT
        sp.academy_id, sp.lecture_id, sp.student_id,
        max(sp.session_order) AS latest_failed_session_order,
        arg_max(sp.session_date, sp.session_order) AS latest_failed_session_date
    FROM {progress} AS sp
    JOIN marts.lecture_progress AS lp ON lp.enrollment_id = sp.enrollment_id
    WHERE lp.status = 'ACTIVE' AND sp.held AND NOT sp.completed
        AND NOT coalesce({_today("sp.")}, false)
    GROUP BY ALL
),
students AS (
    SELECT
        academy_id,
        lecture_id,
        any_value(lecture_title) AS lecture_title,
        student_id,
        -- ordered, so the view (and the report and exports built on it) is reproducible
        array_to_string(list_sort(list(DISTINCT enrollment_id)), ', ') AS enrollment_ids,
        arg_max(status_ko, status = 'ACTIVE') AS status_ko,
        arg_max(risk_level, {level_rank_sql("risk_level")}) AS risk_level,
        arg_max(risk_level_ko, {level_rank_sql("risk_level")}) AS risk_level_ko,
        count(DISTINCT session_id) FILTER (WHERE NOT approved AND NOT in_progress)
            AS pending_sessions,
        string_agg(DISTINCT reason_ko, ', ' ORDER BY reason_ko)
            FILTER (WHERE NOT approved AND NOT in_progress)
            AS pending_reasons,
        min(session_order) FILTER (WHERE NOT approved AND NOT in_progress)
            AS oldest_pending_session_order,
        arg_min(session_date, session_order) FILTER (WHERE NOT approved AND NOT in_progress)
            AS oldest_pending_session_date,
        max(days_waiting) FILTER (WHERE NOT approved AND NOT in_progress) AS days_waiting,
        count(DISTINCT session_id) FILTER (WHERE in_progress AND NOT approved)
            AS in_progress_sessions,
        count(*) FILTER (WHERE approved) AS approved_links,
        max(calculated_at) AS calculated_at
    FROM links
    GROUP BY academy_id, lecture_id, student_id
)
SELECT
    s.academy_id, s.lecture_id, s.lecture_title, s.student_id, s.enrollment_ids, s.status_ko,
    s.risk_level, s.risk_level_ko, s.pending_sessions, s.pending_reasons,
    s.oldest_pending_session_order, s.oldest_pending_session_date, s.days_waiting,
    s.in_progress_sessions, f.latest_failed_session_order, f.latest_failed_session_date,
    s.approved_links, s.approved_links > 0 AS approved, s.calculated_at
FROM students AS s
LEFT JOIN failures AS f USING (academy_id, lecture_id, student_id)
"""


# What the report needs of every (academy, lecture, student) of the clinic queue: the columns
# CLINIC_BY_STUDENT is ordered by and those its cards and chart count, with CLINIC_BY_STUDENT's
# own expressions. The text columns (titles, labels, reasons, enrollment list) and the latest
# failure are left out: the report computes them only for the rows it shows
# (`clinic_by_student_select` over those students' links). Measured at M (885k links, 94k rows,
# best of 3 on a loaded machine): 0.30 CPU s, the whole CLINIC_BY_STUDENT 1.58 CPU s.
CLINIC_ORDER_COLUMNS = f"""
WITH rows AS (
    SELECT
        cl.academy_id, cl.lecture_id, cl.student_id, cl.session_id, cl.reason, cl.approved,
        ses.session_date, lp.calculated_at,
        date_diff('day', CAST(least(CAST(ses.session_date AS TIMESTAMP), cl.requested_at) AS DATE),
                  CAST(lp.calculated_at AS DATE)) AS days_waiting
    FROM marts.clinic_links AS cl
    LEFT JOIN marts.lecture_progress AS lp ON lp.enrollment_id = cl.enrollment_id
    LEFT JOIN raw.sessions AS ses ON ses.session_id = cl.session_id
),
links AS (
    SELECT *, reason = 'AUTO_FAILED' AND coalesce({_today()}, false) AS in_progress FROM rows
)
SELECT
    academy_id,
    lecture_id,
    student_id,
    count(DISTINCT session_id) FILTER (WHERE NOT approved AND NOT in_progress)
        AS pending_sessions,
    max(days_waiting) FILTER (WHERE NOT approved AND NOT in_progress) AS days_waiting
FROM links
GROUP BY academy_id, lecture_id, student_id
"""

CLINIC_BY_STUDENT = View(
    name="clinic_by_student",
    select=clinic_by_student_select(),
    order_by=(
        "pending_sessions > 0 DESC, days_waiting DESC NULLS LAST, pending_sessions DESC, "
        "academy_id, lecture_id, student_id"
    ),
    description=(
        "The clinic queue a teacher works through (report only; not created as a view): one "
        "row per (academy, lecture, student) with at least one marts.clinic_links row, pending "
        "first, the longest wait first. A link is pending when it is not approved and is not "
        "the AUTO_FAILED link of a session held on the as-of date (in progress, counted apart)."
    ),
    columns={
        "academy_id": "Academy (tenant) running the lecture.",
        "lecture_id": "Lecture.",
        "lecture_title": _LECTURE_TITLE,
        "student_id": "Student; with lecture_id unique in this query.",
        "enrollment_ids": "The student's enrollments in the lecture (normally one), comma-separated.",
        "status_ko": "수강중 when any of those enrollments is ACTIVE, else 수강취소.",
        "risk_level": "The highest current risk level among those enrollments.",
        "risk_level_ko": "Korean label of risk_level.",
        "pending_sessions": "Distinct sessions with a pending link.",
        "pending_reasons": "Korean labels of the pending links' reasons, comma-separated.",
        "oldest_pending_session_order": "The lowest session_order among pending links.",
        "oldest_pending_session_date": "session_date of that session; null when it has none.",
        "days_waiting": "The longest days_waiting (v_clinic_queue) among pending links.",
        "in_progress_sessions": (
            "Sessions held on the as-of date whose AUTO_FAILED link is not approved: in "
            "progress, not pending."
        ),
        "latest_failed_session_order": (
            "The highest session_order that an ACTIVE enrollment of the student has held and "
            "not completed, sessions held on the as-of date left out; null when none."
        ),
        "latest_failed_session_date": "session_date of that session.",
        "approved_links": "Links of the student and lecture approved (clinic_links.approved).",
        "approved": "approved_links > 0: a clinic is already approved for the student.",
        "calculated_at": _AS_OF,
    },
)

VIEWS: dict[str, View] = {
    v.name: v for v in (AT_RISK, LECTURE_SUMMARY, SESSION_FUNNEL, CLINIC_QUEUE)
}


def view_query(name: str) -> str:
    """The ordered SELECT of a view, usable on a read-only connection (no view needed)."""
    return VIEWS[name].sql


def create_views(
    con: duckdb.DuckDBPyConnection, count: bool = True, column_comments: bool = True
) -> dict[str, int]:
    """(Re)create every analyst view with its comments, in one transaction.

    Raises (and rolls back, leaving the previous views) when a view's columns differ from its
    documented columns. Returns the row count of every view (empty with `count=False`: a
    caller that runs the views anyway counts them itself). `column_comments=False`: the view
    comment only (DuckLake refuses comments on a view's columns).
    """
    with transaction(con):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(SCHEMA)}")
        for view in VIEWS.values():
            con.execute(f"CREATE OR REPLACE VIEW {target(view.qualified)} AS {view.sql}")
            found = column_names(con, view.qualified)
            if found != list(view.columns):
                raise ValueError(
                    f"{view.qualified}: columns {found} differ from the documented "
                    f"{list(view.columns)}"
                )
            columns = view.columns if column_comments else {}
            document_table(con, view.qualified, TableDoc(view.description, columns), kind="VIEW")
        return (
            {
                name: con.execute(f"SELECT count(*) FROM {target(view.qualified)}").fetchone()[0]
                for name, view in VIEWS.items()
            }
            if count
            else {}
        )
