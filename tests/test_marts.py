"""Contract §3-§4 on tiny hand-written cases: completion, risk, risk_log and clinic links."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipelines.core.marts import RiskThresholds
from tests.conftest import AS_OF, landing_with, marts_for, row

POLICY_ALL = "1,80,1,9999,60,1,9999,SUBMIT,"  # exams and homework from session 1


def sp(marts, session_id, enrollment_id=1000):
    return row(marts["session_progress"], enrollment_id=enrollment_id, session_id=session_id)


def lp(marts, enrollment_id=1000):
    return row(marts["lecture_progress"], enrollment_id=enrollment_id)


def test_grid_covers_every_session_held_or_not(tmp_path):
    marts = marts_for(landing_with(tmp_path))
    assert marts["session_progress"]["session_id"].to_list() == [101, 102, 103, 104]
    assert marts["session_progress"]["held"].to_list() == [True, True, True, False]
    assert sp(marts, 101)["attendance_type"] == "online"
    assert sp(marts, 101)["video_progress_rate"] == 0
    assert sp(marts, 101)["calculated_at"] == AS_OF


def test_session_without_date_is_held(tmp_path):
    landing = landing_with(tmp_path, sessions=["101,1,1,,"])
    assert sp(marts_for(landing), 101)["held"] is True


def test_default_policy_video_rate_and_windows(tmp_path):
    landing = landing_with(
        tmp_path, video_progress=["1000,101,89,2026-03-02 10:00", "1000,102,90,2026-03-09 10:00"]
    )
    marts = marts_for(landing)
    s1, s2 = sp(marts, 101), sp(marts, 102)
    assert (s1["video_completed"], s2["video_completed"]) == (False, True)
    # default windows 2..9999: session 1 has no exam or homework
    assert (s1["exam_applicable"], s1["homework_applicable"]) == (False, False)
    assert (s2["exam_applicable"], s2["homework_applicable"]) == (True, True)
    assert s1["exam_passed"] and s1["homework_passed"]


def test_per_column_policy_defaults(tmp_path):
    landing = landing_with(
        tmp_path,
        policies=["1,50,,,,,,,"],
        video_progress=["1000,102,50,2026-03-09 10:00"],
        submissions=["1,1000,102,exam,60,,2026-03-09 11:00"],
    )
    s2 = sp(marts_for(landing), 102)
    assert s2["video_completed"] and s2["exam_passed"]  # pass score default 60
    assert not s2["homework_passed"]  # default TEACHER_APPROVAL, nothing approved


def test_offline_attendance_completes_video_latest_row_counts(tmp_path):
    landing = landing_with(
        tmp_path,
        attendance=[
            "1000,101,online,2026-03-02 09:00",
            "1000,101,offline,2026-03-02 10:00",
            "1000,102,offline,2026-03-09 09:00",
            "1000,102,online,2026-03-09 10:00",
        ],
    )
    marts = marts_for(landing)
    assert sp(marts, 101)["attendance_type"] == "offline" and sp(marts, 101)["completed"]
    assert sp(marts, 101)["completed_at"] == datetime(2026, 3, 2, 10)
    assert sp(marts, 102)["attendance_type"] == "online" and not sp(marts, 102)["video_completed"]


def test_events_after_as_of_are_ignored(tmp_path):
    landing = landing_with(
        tmp_path,
        attendance=["1000,101,offline,2026-11-25 12:00:01"],
        video_progress=["1000,101,100,2026-11-25 12:00:00"],
    )
    marts = marts_for(landing)
    assert sp(marts, 101)["attendance_type"] == "online"
    assert sp(marts, 101)["video_progress_rate"] == 100
    assert lp(marts)["last_activity_at"] == datetime(2026, 11, 25, 12)


def test_as_of_decides_held(tmp_path):
    marts = marts_for(landing_with(tmp_path), as_of=datetime(2026, 3, 9, 0, 0))
    assert marts["session_progress"]["held"].to_list() == [True, True, False, False]
    assert lp(marts)["held_sessions"] == 2


def test_exam_latest_scored_attempt_ties_and_unscored(tmp_path):
    landing = landing_with(
        tmp_path,
        policies=[POLICY_ALL],
        submissions=[
            "1,1000,101,exam,90,,2026-03-02 10:00",
            "2,1000,101,exam,40,,2026-03-02 11:00",
            "3,1000,101,exam,,,2026-03-02 12:00",  # no score: ignored
            "5,1000,102,exam,30,,2026-03-09 10:00",
            "4,1000,102,exam,80,,2026-03-09 10:00",  # same time: max submission_id (5) counts
        ],
    )
    marts = marts_for(landing)
    assert sp(marts, 101)["exam_score"] == 40 and not sp(marts, 101)["exam_passed"]
    assert sp(marts, 102)["exam_score"] == 30
    assert sp(marts, 103)["exam_score"] is None and not sp(marts, 103)["exam_passed"]


@pytest.mark.parametrize(
    ("pass_type", "pass_score", "rows", "passed"),
    [
        ("SUBMIT", "", ["1,1000,101,homework,,,2026-03-02 10:00"], True),
        ("SUBMIT", "", [], False),
        ("TEACHER_APPROVAL", "", ["1,1000,101,homework,100,,2026-03-02 10:00"], False),
        ("TEACHER_APPROVAL", "", ["1,1000,101,homework,,true,2026-03-02 10:00"], True),
        ("SCORE", "70", ["1,1000,101,homework,69,true,2026-03-02 10:00"], False),
        ("SCORE", "70", ["1,1000,101,homework,70,,2026-03-02 10:00"], True),
        ("SCORE", "", ["1,1000,101,homework,100,false,2026-03-02 10:00"], False),
        ("SCORE", "", ["1,1000,101,homework,,1,2026-03-02 10:00"], True),
    ],
)
def test_homework_pass_types(tmp_path, pass_type, pass_score, rows, passed):
    policy = f"1,0,9,9,60,1,9999,{pass_type},{pass_score}"
    marts = marts_for(landing_with(tmp_path, policies=[policy], submissions=rows))
    s1 = sp(marts, 101)
    assert s1["homework_submitted"] is bool(rows)
    assert s1["homework_passed"] is passed
    assert s1["completed"] is passed  # video rate 0 and no exam in session 1


def test_completed_at_is_latest_evidence(tmp_path):
    landing = landing_with(
        tmp_path,
        policies=["1,80,1,9999,60,1,9999,TEACHER_APPROVAL,"],
        video_progress=[
            "1000,101,50,2026-03-02 09:00",
            "1000,101,85,2026-03-02 10:00",
            "1000,101,95,2026-03-02 11:00",
        ],
        submissions=[
            "1,1000,101,homework,,false,2026-03-02 08:00",
            "2,1000,101,homework,,true,2026-03-02 09:30",
            "3,1000,101,homework,,true,2026-03-02 09:45",
            "4,1000,101,exam,75,,2026-03-02 09:50",
        ],
    )
    s1 = sp(marts_for(landing), 101)
    # video 10:00 (first >= 80), homework 09:30 (first approved), exam 09:50 -> 10:00
    assert s1["completed"] and s1["completed_at"] == datetime(2026, 3, 2, 10)


def test_completed_at_null_without_evidence(tmp_path):
    landing = landing_with(tmp_path, policies=["1,0,9,9,60,9,9,SUBMIT,"])
    s1 = sp(marts_for(landing), 101)
    assert s1["completed"] and s1["completed_at"] is None


def test_streaks_risk_and_risk_log(tmp_path):
    # exams from session 1; video rate 0 so completion is decided by the exam alone
    landing = landing_with(
        tmp_path,
        policies=["1,0,1,9999,60,9,9,SUBMIT,"],
        submissions=[
            "1,1000,101,exam,50,,2026-03-02 10:00",
            "2,1000,102,exam,40,,2026-03-09 10:00",
            "3,1000,103,exam,30,,2026-03-16 10:00",
        ],
    )
    marts = marts_for(landing)
    p = lp(marts)
    assert p["consecutive_failed_sessions"] == 3 and p["consecutive_low_scores"] == 3
    assert (p["risk_level"], p["risk_rule"]) == ("DANGER", "CONSECUTIVE_LOW_SCORE")
    assert p["last_session_id"] == 103 and p["avg_exam_score"] == pytest.approx(40.0)
    log = marts["risk_log"]
    assert log.select("session_id", "risk_level", "rule", "streak", "reason").rows() == [
        (102, "WARNING", "CONSECUTIVE_LOW_SCORE", 2, "연속 2회 저점수"),
        (103, "DANGER", "CONSECUTIVE_LOW_SCORE", 3, "연속 3회 저점수"),
    ]


def test_incomplete_rule_when_low_score_streak_is_shorter(tmp_path):
    # session 1 failed without an exam score, 2 and 3 low scores: fail streak 3, low 2
    landing = landing_with(
        tmp_path,
        policies=["1,0,1,9999,60,9,9,SUBMIT,"],
        submissions=[
            "2,1000,102,exam,40,,2026-03-09 10:00",
            "3,1000,103,exam,30,,2026-03-16 10:00",
        ],
    )
    marts = marts_for(landing)
    p = lp(marts)
    assert (p["risk_level"], p["risk_rule"]) == ("DANGER", "CONSECUTIVE_INCOMPLETE")
    assert marts["risk_log"].select("session_id", "risk_level", "rule", "streak").rows() == [
        (102, "WARNING", "CONSECUTIVE_INCOMPLETE", 2),
        (103, "DANGER", "CONSECUTIVE_INCOMPLETE", 3),
    ]


def test_unscored_sessions_neither_extend_nor_break_low_streak(tmp_path):
    landing = landing_with(
        tmp_path,
        policies=["1,0,1,9999,60,9,9,SUBMIT,"],
        sessions=[
            "101,1,1,,2026-03-02",
            "102,1,2,,2026-03-09",
            "103,1,3,,2026-03-16",
            "104,1,4,,2026-03-23",
        ],
        submissions=[
            "1,1000,101,exam,40,,2026-03-02",
            "2,1000,102,exam,,,2026-03-09",
            "3,1000,103,exam,45,,2026-03-16",
            "4,1000,104,exam,90,,2026-03-23",
        ],
    )
    marts = marts_for(landing)
    p = lp(marts)
    assert p["consecutive_low_scores"] == 0 and p["consecutive_failed_sessions"] == 0
    assert p["risk_level"] == "NORMAL"
    # after session 3: fail streak 3 (INCOMPLETE DANGER); low streak 2 (101, 103) WARNING
    assert marts["risk_log"].select("session_id", "risk_level", "rule").rows() == [
        (102, "WARNING", "CONSECUTIVE_INCOMPLETE"),
        (103, "DANGER", "CONSECUTIVE_INCOMPLETE"),
    ]


def test_dropped_enrollment_is_normal_and_gets_only_manual_links(tmp_path):
    landing = landing_with(
        tmp_path,
        enrollments=["1000,1,7,DROPPED,"],
        clinic_requests=["1000,101,MANUAL_REQUEST,,상담,2026-03-03 10:00"],
    )
    marts = marts_for(landing)
    p = lp(marts)
    assert p["status"] == "DROPPED" and p["risk_level"] == "NORMAL" and p["risk_rule"] is None
    assert p["consecutive_failed_sessions"] == 3
    assert marts["risk_log"].is_empty()
    assert marts["clinic_links"].select("session_id", "reason").rows() == [(101, "MANUAL_REQUEST")]


def test_null_status_is_active(tmp_path):
    landing = landing_with(tmp_path, enrollments=["1000,1,7,,"])
    assert lp(marts_for(landing))["status"] == "ACTIVE"


def test_clinic_links_merge_and_approvals(tmp_path):
    landing = landing_with(
        tmp_path,
        clinic_requests=[
            "1000,101,AUTO_FAILED,false,첫 요청,2026-03-03 10:00",
            "1000,101,AUTO_FAILED,true,승인,2026-03-04 10:00",  # latest: approved
            "1000,101,AUTO_FAILED,false,나중,2026-11-26 10:00",  # after as-of: ignored
            "1000,101,AUTO_RISK,true,,2026-03-04 10:00",  # matches no derived link
            "1000,102,TEACHER_RECOMMEND,,추천,2026-03-10 10:00",
            "1000,102,TEACHER_RECOMMEND,,추천 2,2026-03-11 10:00",
        ],
    )
    links = marts_for(landing)["clinic_links"]
    assert links.select("session_id", "reason", "is_auto", "approved", "memo").rows() == [
        (101, "AUTO_FAILED", True, True, "승인"),
        (102, "AUTO_FAILED", True, False, None),
        (102, "TEACHER_RECOMMEND", False, False, "추천 2"),
        (103, "AUTO_FAILED", True, False, None),
        (103, "AUTO_RISK", True, False, None),
    ]
    assert row(links, session_id=101, reason="AUTO_FAILED")["requested_at"] == datetime(
        2026, 3, 4, 10
    )


def test_thresholds_are_configuration(tmp_path):
    marts = marts_for(landing_with(tmp_path), thresholds=RiskThresholds(warning=3, danger=4))
    p = lp(marts)
    assert (p["risk_level"], p["consecutive_failed_sessions"]) == ("WARNING", 3)


def test_enrollment_of_lecture_without_sessions(tmp_path):
    landing = landing_with(
        tmp_path, lectures=["1,10,a", "2,10,b"], enrollments=["1000,1,7,,", "2000,2,7,,"]
    )
    p = lp(marts_for(landing), 2000)
    assert (p["total_sessions"], p["completion_rate"], p["last_session_id"]) == (0, 0.0, None)
    assert p["risk_level"] == "NORMAL"
