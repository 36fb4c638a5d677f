-- The DuckDB-SQL peer: the four progress marts (data contract §3-§4) written as plain DuckDB
-- SQL over the warehouse's raw.* tables, the way an analyst would: temp tables for the policy
-- calendar and the per-(enrollment, session) event facts, one grid, window functions for the
-- streaks. Results go to schema sql_peer; `pipelines.bench.sql_peer` runs this file statement
-- by statement (split on ';' at line end) and then checks every table equals marts.*.
--
-- Parameters are DuckDB variables set by the caller:
--   as_of (TIMESTAMP), warning_streak (BIGINT), danger_streak (BIGINT)

CREATE SCHEMA IF NOT EXISTS sql_peer;

-- One policy per valid lecture; missing rows and null columns take the default policy.
CREATE OR REPLACE TEMP TABLE policy AS
SELECT l.lecture_id,
       l.academy_id,
       coalesce(p.video_required_rate, 90)           AS video_required_rate,
       coalesce(p.exam_start_session_order, 2)       AS exam_start_session_order,
       coalesce(p.exam_end_session_order, 9999)      AS exam_end_session_order,
       coalesce(p.exam_pass_score, 60.0)             AS exam_pass_score,
       coalesce(p.homework_start_session_order, 2)   AS homework_start_session_order,
       coalesce(p.homework_end_session_order, 9999)  AS homework_end_session_order,
       coalesce(p.homework_pass_type, 'TEACHER_APPROVAL') AS homework_pass_type,
       p.homework_pass_score
FROM raw.lectures l
LEFT JOIN raw.policies p USING (lecture_id);

-- Every session with its lecture's policy, whether it is held, and its exam/homework windows.
CREATE OR REPLACE TEMP TABLE calendar AS
SELECT s.session_id,
       s.lecture_id,
       s.session_order,
       s.session_date,
       p.academy_id,
       p.video_required_rate,
       p.exam_pass_score,
       p.homework_pass_type,
       p.homework_pass_score,
       (s.session_date IS NULL OR s.session_date <= CAST(getvariable('as_of') AS DATE)) AS held,
       s.session_order BETWEEN p.exam_start_session_order AND p.exam_end_session_order
           AS exam_applicable,
       s.session_order BETWEEN p.homework_start_session_order AND p.homework_end_session_order
           AS homework_applicable
FROM raw.sessions s
JOIN policy p USING (lecture_id);

-- Latest attendance per (enrollment, session).
CREATE OR REPLACE TEMP TABLE attendance_facts AS
SELECT enrollment_id,
       session_id,
       arg_max(attendance_type, recorded_at) AS attendance_type,
       max(recorded_at)                      AS attendance_at
FROM raw.attendance
WHERE recorded_at <= getvariable('as_of')
GROUP BY enrollment_id, session_id;

-- Best video rate, and when the required rate was first reached.
CREATE OR REPLACE TEMP TABLE video_facts AS
SELECT v.enrollment_id,
       v.session_id,
       max(v.progress_rate) AS video_progress_rate,
       min(v.recorded_at) FILTER (WHERE v.progress_rate >= c.video_required_rate) AS video_at
FROM raw.video_progress v
JOIN calendar c USING (session_id)
WHERE v.recorded_at <= getvariable('as_of')
GROUP BY v.enrollment_id, v.session_id;

-- The counted exam attempt: the latest scored one (submitted_at, then submission_id).
CREATE OR REPLACE TEMP TABLE exam_facts AS
SELECT enrollment_id,
       session_id,
       arg_max(score, (submitted_at, submission_id)) AS exam_score,
       max(submitted_at)                             AS exam_at
FROM raw.submissions
WHERE kind = 'exam' AND score IS NOT NULL AND submitted_at <= getvariable('as_of')
GROUP BY enrollment_id, session_id;

-- Homework: first submission, first approved one, first one reaching the pass score.
CREATE OR REPLACE TEMP TABLE homework_facts AS
SELECT h.enrollment_id,
       h.session_id,
       min(h.submitted_at) AS hw_first_at,
       min(h.submitted_at) FILTER (WHERE coalesce(h.teacher_approved, false)) AS hw_approved_at,
       min(h.submitted_at) FILTER (WHERE h.score >= c.homework_pass_score)    AS hw_scored_at
FROM raw.submissions h
JOIN calendar c USING (session_id)
WHERE h.kind = 'homework' AND h.submitted_at <= getvariable('as_of')
GROUP BY h.enrollment_id, h.session_id;

-- The enrollment x session grid with every completion fact.
CREATE OR REPLACE TEMP TABLE grid AS
WITH joined AS (
    SELECT e.enrollment_id,
           c.session_id,
           e.lecture_id,
           c.academy_id,
           e.student_id,
           coalesce(e.status, 'ACTIVE') AS status,
           c.session_order,
           c.session_date,
           c.held,
           c.video_required_rate,
           c.exam_pass_score,
           c.exam_applicable,
           c.homework_applicable,
           c.homework_pass_type,
           c.homework_pass_score,
           coalesce(a.attendance_type, 'online') AS attendance_type,
           a.attendance_at,
           coalesce(v.video_progress_rate, 0) AS video_progress_rate,
           v.video_at,
           x.exam_score,
           x.exam_at,
           h.hw_first_at,
           CASE WHEN c.homework_pass_type = 'SUBMIT' THEN h.hw_first_at
                WHEN c.homework_pass_type = 'SCORE' AND c.homework_pass_score IS NOT NULL
                    THEN h.hw_scored_at
                ELSE h.hw_approved_at END AS hw_at
    FROM raw.enrollments e
    JOIN calendar c USING (lecture_id)
    LEFT JOIN attendance_facts a USING (enrollment_id, session_id)
    LEFT JOIN video_facts v USING (enrollment_id, session_id)
    LEFT JOIN exam_facts x USING (enrollment_id, session_id)
    LEFT JOIN homework_facts h USING (enrollment_id, session_id)
),
passed AS (
    SELECT *,
           attendance_type = 'offline' OR video_progress_rate >= video_required_rate
               AS video_completed,
           coalesce(NOT exam_applicable OR exam_score >= exam_pass_score, false) AS exam_passed,
           hw_first_at IS NOT NULL AS homework_submitted,
           NOT homework_applicable OR hw_at IS NOT NULL AS homework_passed,
           CASE WHEN attendance_type = 'offline' THEN attendance_at ELSE video_at END
               AS video_evidence_at
    FROM joined
)
SELECT *,
       video_completed AND exam_passed AND homework_passed AS completed
FROM passed;

CREATE OR REPLACE TABLE sql_peer.session_progress AS
SELECT enrollment_id, session_id, lecture_id, academy_id, student_id, session_order,
       session_date, held, attendance_type, video_progress_rate, video_completed,
       exam_applicable, exam_score, exam_passed, homework_applicable, homework_submitted,
       homework_passed, completed,
       CASE WHEN completed THEN greatest(video_evidence_at,
                                         CASE WHEN exam_applicable THEN exam_at END,
                                         CASE WHEN homework_applicable THEN hw_at END)
       END AS completed_at,
       getvariable('as_of') AS calculated_at
FROM grid;

-- Held sessions in order with both trailing streaks and the risk after each one (§4.3's walk).
CREATE OR REPLACE TEMP TABLE walk AS
WITH ranked AS (
    SELECT enrollment_id, session_id, lecture_id, academy_id, student_id, status,
           session_order, session_date, completed,
           exam_applicable AND exam_score IS NOT NULL AS counted,
           exam_applicable AND exam_score IS NOT NULL AND exam_score >= exam_pass_score
               AS exam_ok,
           row_number() OVER w AS k,
           count(*) FILTER (WHERE exam_applicable AND exam_score IS NOT NULL) OVER w
               AS counted_n
    FROM grid
    WHERE held
    WINDOW w AS (PARTITION BY enrollment_id ORDER BY session_order, session_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
streaks AS (
    SELECT *,
           k - max(CASE WHEN completed THEN k ELSE 0 END) OVER w AS fail_streak,
           counted_n - max(CASE WHEN exam_ok THEN counted_n ELSE 0 END) OVER w AS low_streak
    FROM ranked
    WINDOW w AS (PARTITION BY enrollment_id ORDER BY k
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
levels AS (
    SELECT *,
           CASE WHEN fail_streak >= getvariable('danger_streak') THEN 2
                WHEN fail_streak >= getvariable('warning_streak') THEN 1 ELSE 0 END AS fail_level,
           CASE WHEN low_streak >= getvariable('danger_streak') THEN 2
                WHEN low_streak >= getvariable('warning_streak') THEN 1 ELSE 0 END AS low_level
    FROM streaks
)
SELECT *,
       CASE WHEN status = 'ACTIVE' THEN greatest(fail_level, low_level) ELSE 0 END AS level,
       CASE WHEN status <> 'ACTIVE' OR greatest(fail_level, low_level) = 0 THEN NULL
            WHEN low_level = greatest(fail_level, low_level) THEN 'CONSECUTIVE_LOW_SCORE'
            ELSE 'CONSECUTIVE_INCOMPLETE' END AS rule
FROM levels;

CREATE OR REPLACE TABLE sql_peer.lecture_progress AS
WITH totals AS (
    SELECT lecture_id, count(*) AS total_sessions, count(*) FILTER (WHERE held) AS held_sessions
    FROM calendar
    GROUP BY lecture_id
),
per_enrollment AS (
    SELECT enrollment_id,
           count(*) FILTER (WHERE completed) AS completed_sessions,
           count(*) FILTER (WHERE held AND NOT completed) AS failed_sessions,
           avg(exam_score) FILTER (WHERE held AND exam_applicable AND exam_score IS NOT NULL)
               AS avg_exam_score
    FROM grid
    GROUP BY enrollment_id
),
last_held AS (
    SELECT enrollment_id,
           arg_max(session_id, k)  AS last_session_id,
           arg_max(fail_streak, k) AS fail_streak,
           arg_max(low_streak, k)  AS low_streak,
           arg_max(level, k)       AS level,
           arg_max_null(rule, k)   AS rule
    FROM walk
    GROUP BY enrollment_id
),
activity AS (
    SELECT enrollment_id, max(activity_at) AS last_activity_at
    FROM (
        SELECT enrollment_id, recorded_at AS activity_at FROM raw.attendance
        UNION ALL SELECT enrollment_id, recorded_at FROM raw.video_progress
        UNION ALL SELECT enrollment_id, submitted_at FROM raw.submissions
    )
    WHERE activity_at <= getvariable('as_of')
    GROUP BY enrollment_id
)
SELECT e.enrollment_id,
       e.lecture_id,
       l.academy_id,
       e.student_id,
       coalesce(e.status, 'ACTIVE') AS status,
       coalesce(t.total_sessions, 0) AS total_sessions,
       coalesce(t.held_sessions, 0) AS held_sessions,
       coalesce(p.completed_sessions, 0) AS completed_sessions,
       coalesce(p.failed_sessions, 0) AS failed_sessions,
       CASE WHEN coalesce(t.total_sessions, 0) > 0
            THEN coalesce(p.completed_sessions, 0) / t.total_sessions ELSE 0.0 END
           AS completion_rate,
       coalesce(h.fail_streak, 0) AS consecutive_failed_sessions,
       coalesce(h.low_streak, 0) AS consecutive_low_scores,
       p.avg_exam_score,
       CASE coalesce(h.level, 0) WHEN 2 THEN 'DANGER' WHEN 1 THEN 'WARNING' ELSE 'NORMAL' END
           AS risk_level,
       h.rule AS risk_rule,
       h.last_session_id,
       a.last_activity_at,
       getvariable('as_of') AS calculated_at
FROM raw.enrollments e
JOIN raw.lectures l USING (lecture_id)
LEFT JOIN totals t USING (lecture_id)
LEFT JOIN per_enrollment p USING (enrollment_id)
LEFT JOIN last_held h USING (enrollment_id)
LEFT JOIN activity a USING (enrollment_id);

CREATE OR REPLACE TABLE sql_peer.risk_log AS
WITH changes AS (
    SELECT *,
           coalesce(lag(level) OVER w, 0) AS previous_level,
           lag(rule) OVER w AS previous_rule
    FROM walk
    WINDOW w AS (PARTITION BY enrollment_id ORDER BY k)
)
SELECT enrollment_id, lecture_id, academy_id, student_id, session_id, session_order,
       session_date,
       CASE level WHEN 2 THEN 'DANGER' ELSE 'WARNING' END AS risk_level,
       rule,
       CASE WHEN rule = 'CONSECUTIVE_LOW_SCORE' THEN low_streak ELSE fail_streak END AS streak,
       CASE WHEN rule = 'CONSECUTIVE_LOW_SCORE'
            THEN '연속 ' || low_streak || '회 저점수'
            ELSE '연속 ' || fail_streak || '차시 미완료' END AS reason
FROM changes
WHERE level > 0 AND (level <> previous_level OR rule IS DISTINCT FROM previous_rule);

CREATE OR REPLACE TABLE sql_peer.clinic_links AS
WITH requests AS (
    SELECT * FROM raw.clinic_requests WHERE requested_at <= getvariable('as_of')
),
candidates AS (
    SELECT enrollment_id, session_id, 'AUTO_FAILED' AS reason
    FROM grid
    WHERE status = 'ACTIVE' AND held AND NOT completed
    UNION ALL
    SELECT enrollment_id, last_session_id, 'AUTO_RISK'
    FROM sql_peer.lecture_progress
    WHERE status = 'ACTIVE' AND risk_level <> 'NORMAL'
    UNION ALL
    SELECT DISTINCT enrollment_id, session_id, reason
    FROM requests
    WHERE reason IN ('MANUAL_REQUEST', 'TEACHER_RECOMMEND')
),
decisions AS (
    SELECT enrollment_id, session_id, reason,
           arg_max_null(approved, requested_at) AS approved,
           arg_max_null(memo, requested_at)     AS memo,
           max(requested_at)               AS requested_at
    FROM requests
    GROUP BY enrollment_id, session_id, reason
)
SELECT c.enrollment_id,
       c.session_id,
       g.lecture_id,
       g.academy_id,
       g.student_id,
       g.session_order,
       c.reason,
       starts_with(c.reason, 'AUTO_') AS is_auto,
       coalesce(d.approved, false) AS approved,
       d.memo,
       d.requested_at
FROM candidates c
LEFT JOIN decisions d USING (enrollment_id, session_id, reason)
LEFT JOIN grid g USING (enrollment_id, session_id);
