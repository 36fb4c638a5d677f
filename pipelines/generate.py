"""Synthetic, realistic extracts for the academy progress pipeline (data contract section 1).

``generate_extracts`` writes all eight contract tables, and the optional ``outcomes`` extract
(contract section 5; ``outcomes=False`` leaves it out), into a landing folder, deterministically
per seed, with vectorized numpy/polars code so that it scales to ~1M enrollments (~100M event
rows) in bounded memory: enrollments are simulated in chunks, and each chunk becomes one
``part-NNN`` file of the event folders.

Layout written into ``out`` (``.csv`` or ``.parquet``)::

    lectures, policies, sessions, enrollments, clinic_requests   single files
    outcomes                                                     single file (optional)
    attendance/, video_progress/, submissions/                   folders of part-NNN files
    _manifest.json                                               what was written and injected

With ``bad_rows=True`` a few contract-breaking rows are injected (never more than 0.8% of a
table's delivered rows are expected in quarantine), covering every quarantine reason, plus
exact re-deliveries that collapse silently and values padded with whitespace. In CSV they are
spliced into the files at random positions; in Parquet, where native columns cannot hold them,
they go to one extra all-text file (``<folder>/part-NNN.parquet`` after the last chunk, or
``<table>/part-000.parquet`` next to a single-file table: the contract unions both).
``_manifest.json`` records, per table and reason, how many rows the pipeline should quarantine.
Also with ``bad_rows=True``, one submissions part comes from "another export tool": columns in
another order, an extra ``graded_by`` column and (CSV) a padded header name.

Other variety that is valid input: CSV timestamps mostly ``YYYY-MM-DD HH:MM:SS`` local, ~5% with
``Z``/``+09:00``/``+0900``/``+09``/``-05:00`` offsets, ``T``, fractions or no seconds (always the
same instant); booleans mostly true/false, some 1/0, TRUE, True. Parquet part files vary the
timestamp type per chunk (naive us, UTC-aware us, naive ms) and some integer widths.

Outcomes (one per enrollment whose result is known at the extract time): every enrollment of a
lecture whose last session is over gets PASS, FAIL or WITHDRAWN, decided 1-14 days after that
last session; in lectures still running, only students who left have one (WITHDRAWN, decided some
days after they stopped). Students who stop completing sessions fail more often: a stretch of
absences or failed exams running into the last sessions, a silent drop-out or a weak student type
raise the chance of FAIL. The outcomes come from their own random stream (seeded from the seed
and a fixed stream number), so turning them on or off never changes any other file.

The output folder must be new, empty (files starting with '.' aside) or an earlier output of
this generator (its ``_manifest.json`` says so). Regenerating removes exactly the files the
earlier run listed in its manifest (for a manifest older than that list: the contract files
``<table>.csv|parquet``, ``<table>/part-*``), and nothing else; a folder holding anything else
without such a manifest is refused (``OutputNotOurs``), so a landing folder is never emptied.

The data describe the state known at the extract time 2026-11-25 06:00 (Asia/Seoul): no event
is later than that, and lectures started at different terms so some have future sessions.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from pipelines.core.contract import DEFAULT_POLICY, PASS_TYPES

__all__ = ["COLUMNS", "TABLES", "generate_extracts"]

TABLES: tuple[str, ...] = (
    "lectures",
    "sessions",
    "policies",
    "enrollments",
    "attendance",
    "video_progress",
    "submissions",
    "clinic_requests",
    "outcomes",
)
OUTCOMES_STREAM = 13  # the outcomes' random stream: np.random.default_rng([seed, 13])
MANIFEST = "_manifest.json"
GENERATOR = "pipelines.generate"

COLUMNS: dict[str, tuple[str, ...]] = {
    "lectures": ("lecture_id", "academy_id", "title"),
    "sessions": ("session_id", "lecture_id", "session_order", "title", "session_date"),
    "policies": (
        "lecture_id",
        "video_required_rate",
        "exam_start_session_order",
        "exam_end_session_order",
        "exam_pass_score",
        "homework_start_session_order",
        "homework_end_session_order",
        "homework_pass_type",
        "homework_pass_score",
    ),
    "enrollments": ("enrollment_id", "lecture_id", "student_id", "status", "enrolled_at"),
    "attendance": ("enrollment_id", "session_id", "attendance_type", "recorded_at"),
    "video_progress": ("enrollment_id", "session_id", "progress_rate", "recorded_at"),
    "submissions": (
        "submission_id",
        "enrollment_id",
        "session_id",
        "kind",
        "score",
        "teacher_approved",
        "submitted_at",
    ),
    "clinic_requests": (
        "enrollment_id",
        "session_id",
        "reason",
        "approved",
        "memo",
        "requested_at",
    ),
    "outcomes": ("enrollment_id", "result", "decided_at"),
}

FOLDER_TABLES = ("attendance", "video_progress", "submissions")
TS_COLUMNS = {
    "enrollments": "enrolled_at",
    "attendance": "recorded_at",
    "video_progress": "recorded_at",
    "submissions": "submitted_at",
    "clinic_requests": "requested_at",
    "outcomes": "decided_at",
}

# ---------------------------------------------------------------------------------------------
# Calendar: everything is local (Asia/Seoul, fixed +09:00) seconds since 1970-01-01 00:00.
DAY = 86_400
HOUR = 3_600
MINUTE = 60
SEOUL_OFFSET = 9 * HOUR


def _day(iso: str) -> int:
    return int(np.datetime64(iso, "D").astype(np.int64))


REF_DAY = _day("2026-11-25")  # sessions dated on or before this day are held
EXTRACT_AT = REF_DAY * DAY + 6 * HOUR  # no event is later than the nightly extract
TERM_STARTS = np.array(
    [
        _day(d)
        for d in (
            "2026-03-02",
            "2026-04-06",
            "2026-05-04",
            "2026-06-01",
            "2026-07-06",
            "2026-09-07",
        )
    ],
    dtype=np.int64,
)
TERM_WEIGHTS = np.array([0.14, 0.10, 0.20, 0.26, 0.15, 0.15])
UPCOMING_TERM = _day("2026-12-28")
CHUSEOK = (_day("2026-09-24"), _day("2026-09-26"))  # no class on the Chuseok holidays

CHUNK_ENROLLMENTS = 25_000
ROW_GROUP = 100_000
BAD_SHARE = 0.008  # expected quarantine per table stays at or below this share
UNKNOWN_ID = 99_000_001  # ids from here on exist nowhere

HW_TYPES = PASS_TYPES

# ---------------------------------------------------------------------------------------------
# Korean content.
GRADES_MIDDLE = ("중1", "중2", "중3")
GRADES_HIGH = ("고1", "고2", "고3")
SUBJECTS_MIDDLE = ("수학", "영어", "국어", "과학")
SUBJECTS_HIGH = ("수학", "영어", "국어", "물리학Ⅰ", "화학Ⅰ", "생명과학Ⅰ")
KINDS = ("심화반", "내신반", "기본반", "정규반", "선행반", "특강", "집중반")
KINDS_G3 = ("수능대비반", "모의고사반", "내신반", "심화반")
WEEKDAYS = ("월", "화", "수", "목", "금", "토")

TOPICS: dict[str, tuple[str, ...]] = {
    "수학/중": (
        "소인수분해",
        "정수와 유리수",
        "문자와 식",
        "일차방정식",
        "좌표평면과 그래프",
        "정비례와 반비례",
        "기본 도형",
        "작도와 합동",
        "평면도형의 성질",
        "입체도형의 성질",
        "유리수와 순환소수",
        "식의 계산",
        "연립일차방정식",
        "일차부등식",
        "일차함수와 그래프",
        "제곱근과 실수",
        "다항식의 곱셈과 인수분해",
        "이차방정식",
        "이차함수의 그래프",
        "이차함수의 활용",
        "삼각비",
        "원의 성질",
        "대푯값과 산포도",
        "확률의 기초",
    ),
    "수학/고": (
        "다항식의 연산",
        "나머지정리",
        "인수분해",
        "복소수",
        "이차방정식의 판별식",
        "이차방정식과 이차함수",
        "이차함수의 활용",
        "여러 가지 방정식",
        "여러 가지 부등식",
        "평면좌표",
        "직선의 방정식",
        "원의 방정식",
        "도형의 이동",
        "집합의 연산",
        "명제와 증명",
        "함수와 합성함수",
        "역함수",
        "유리함수",
        "무리함수",
        "순열과 조합",
        "지수와 로그",
        "지수함수와 로그함수",
        "삼각함수의 그래프",
        "사인법칙과 코사인법칙",
        "등차수열과 등비수열",
        "수열의 합",
        "수학적 귀납법",
        "함수의 극한",
        "미분계수와 도함수",
        "도함수의 활용",
        "부정적분과 정적분",
        "정적분의 활용",
    ),
    "영어": (
        "시제와 완료",
        "조동사",
        "수동태",
        "to부정사",
        "동명사",
        "분사와 분사구문",
        "관계대명사",
        "관계부사",
        "가정법",
        "비교 구문",
        "일치와 화법",
        "특수 구문(도치, 강조)",
        "독해: 주제와 요지",
        "독해: 빈칸 추론",
        "독해: 순서 배열",
        "독해: 문장 삽입",
        "독해: 요약문 완성",
        "어휘: 문맥 속 어휘",
        "듣기 실전",
        "서술형: 영작 연습",
        "내신 본문 분석 1",
        "내신 본문 분석 2",
        "모의고사 유형 분석",
    ),
    "국어": (
        "현대시의 이해",
        "고전시가",
        "현대소설",
        "고전소설",
        "수필과 극",
        "비문학: 인문",
        "비문학: 사회",
        "비문학: 과학·기술",
        "비문학: 예술",
        "문법: 음운의 변동",
        "문법: 단어의 형성",
        "문법: 문장의 짜임",
        "문법: 국어의 역사",
        "화법과 작문",
        "매체 언어",
        "서술형 답안 쓰기",
        "문학 개념어 정리",
    ),
    "과학": (
        "물질의 구성",
        "전기와 자기",
        "열과 우리 생활",
        "화학 반응의 규칙",
        "기권과 날씨",
        "운동과 에너지",
        "자극과 반응",
        "생식과 유전",
        "에너지 전환과 보존",
        "별과 우주",
        "광합성",
        "소화와 순환",
    ),
    "물리학Ⅰ": (
        "힘과 운동",
        "뉴턴 운동 법칙",
        "운동량과 충격량",
        "역학적 에너지 보존",
        "열역학 법칙",
        "특수 상대성 이론",
        "질량과 에너지",
        "물질의 전기적 특성",
        "반도체와 다이오드",
        "전류의 자기 작용",
        "전자기 유도",
        "파동의 성질",
        "전반사와 광통신",
        "빛의 이중성",
    ),
    "화학Ⅰ": (
        "화학의 첫걸음",
        "몰과 화학 반응식",
        "용액의 농도",
        "원자의 구조",
        "전자 배치",
        "주기적 성질",
        "이온 결합",
        "공유 결합",
        "분자의 구조",
        "동적 평형",
        "물의 자동 이온화",
        "산 염기 중화 반응",
        "산화 환원 반응",
    ),
    "생명과학Ⅰ": (
        "생명 현상의 특성",
        "세포와 물질대사",
        "기관계의 통합",
        "흥분의 전도와 전달",
        "근육 수축",
        "신경계",
        "항상성",
        "방어 작용",
        "염색체와 유전 정보",
        "사람의 유전",
        "돌연변이",
        "생태계의 구성",
        "에너지 흐름과 물질 순환",
    ),
}

MEMOS: dict[str, tuple[str, ...]] = {
    "AUTO_FAILED": (
        "영상 미시청, 보충 영상 재시청 후 확인",
        '재시험 대상: "이차함수" 단원 오답 정리 후 재응시',
        "숙제 미제출 - 다음 주 월요일까지 제출",
        "결석 2회 연속\n학부모 상담 필요",
        "클리닉 참석 확인 (토 14시)",
        "오답노트 검사 후 통과 처리",
        "시험 점수 미달, 재응시 예정",
        "보충 수업 배정: 화요일 18:30, 3강의실",
    ),
    "AUTO_RISK": (
        "연속 미완료로 학부모 연락함",
        "위험군 관리 대상, 주 1회 상담",
        '학생 면담: "학원 일정이 너무 많아요"',
        "담임 상담 예정\n(다음 주 수요일)",
    ),
    "MANUAL_REQUEST": (
        "학생 직접 신청: 질문 있음",
        "수행평가 대비 추가 설명 요청",
        "학부모 요청, 보충 수업 희망",
        "결석 사유서 제출 (병결), 보강 요청",
    ),
    "TEACHER_RECOMMEND": (
        "기초 개념 부족, 개별 클리닉 권장",
        "서술형 감점 많음,\n풀이 과정 쓰기 연습",
        "계산 실수 잦음",
        "'함수' 단원 선수학습 필요, 교재 p.42~58",
    ),
}
CLINIC_REASONS = ("AUTO_FAILED", "AUTO_RISK", "MANUAL_REQUEST", "TEACHER_RECOMMEND")


# ---------------------------------------------------------------------------------------------
# Small vectorized helpers.


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row i of the parents repeated counts[i] times: (parent index, index within parent)."""
    counts = np.asarray(counts, dtype=np.int64)
    parent = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return parent, np.arange(parent.size, dtype=np.int64) - starts[parent]


def _group_cumsum(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Cumulative sum within contiguous groups (k = index within the group)."""
    cs = np.cumsum(values)
    first = np.arange(values.size, dtype=np.int64) - k
    return cs - cs[first] + values[first]


def _pick(strings: tuple[str, ...] | list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(list(strings), dtype=pl.String).gather(pl.Series(idx, dtype=pl.Int64))


def _ts_series(name: str, secs: np.ndarray, null: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(name, np.asarray(secs, dtype=np.int64) * 1_000_000).cast(pl.Datetime("us"))
    if null is not None and null.any():
        s = s.scatter(np.flatnonzero(null), None)
    return s


def _with_nulls(s: pl.Series, null: np.ndarray) -> pl.Series:
    idx = np.flatnonzero(null)
    return s.scatter(idx, None) if idx.size else s


# ---------------------------------------------------------------------------------------------
# The world: academies, lectures, sessions, policies, students and enrollments.


@dataclass
class _World:
    lec_id: np.ndarray
    lec_academy: np.ndarray
    lec_title: list[str]
    lec_nsess: np.ndarray
    lec_sess_off: np.ndarray
    lec_offline: np.ndarray
    policies: pl.DataFrame
    eff: dict[str, np.ndarray]  # effective policy per lecture index
    sess_id: np.ndarray
    sess_lec: np.ndarray
    sess_order: np.ndarray
    sess_title: list[str]
    sess_day: np.ndarray
    sess_date_null: np.ndarray
    sess_start: np.ndarray
    enr: dict[str, np.ndarray] = field(default_factory=dict)


def _lecture_titles(
    rng: np.random.Generator, lec_academy: np.ndarray
) -> tuple[list[str], list[str]]:
    titles: list[str] = []
    topic_keys: list[str] = []
    seen: dict[tuple[int, str], int] = {}
    for a in lec_academy.tolist():
        high = rng.random() < 0.6
        grade = str(rng.choice(GRADES_HIGH if high else GRADES_MIDDLE))
        subject = str(rng.choice(SUBJECTS_HIGH if high else SUBJECTS_MIDDLE))
        kind = str(rng.choice(KINDS_G3 if grade == "고3" else KINDS))
        title = f"{grade} {subject} {kind}"
        n = seen.get((a, title), 0)
        seen[(a, title)] = n + 1
        if n:
            title = f"{title} {chr(ord('A') + n % 26)}"
        if rng.random() < 0.3:
            title = f"{title} ({rng.choice(WEEKDAYS)})"
        titles.append(title)
        topic_keys.append(f"수학/{'고' if high else '중'}" if subject == "수학" else subject)
    return titles, topic_keys


def _build_world(rng: np.random.Generator, academies: int, enrollments: int) -> _World:
    n_lec = max(academies * 3, round(enrollments / 30))
    lec_academy = (np.arange(n_lec) * academies // n_lec + 1).astype(np.int64)
    lec_id = 1001 + np.arange(n_lec, dtype=np.int64)
    lec_title, topic_keys = _lecture_titles(rng, lec_academy)

    # Schedule: term start (a Monday), weekday, class hour, number of sessions.
    term = rng.choice(TERM_STARTS, size=n_lec, p=TERM_WEIGHTS)
    weekday = rng.integers(0, 6, n_lec)
    hour = np.where(weekday == 5, rng.integers(10, 16, n_lec), rng.integers(17, 21, n_lec))
    minute = rng.choice([0, 0, 30], n_lec)
    nsess = np.where(rng.random(n_lec) < 0.55, 30, rng.integers(24, 33, n_lec)).astype(np.int64)
    upcoming = np.zeros(n_lec, dtype=bool)
    if n_lec >= 6:  # one lecture opens next term: enrollments already, no sessions yet
        last_of_first = int(np.flatnonzero(lec_academy == lec_academy[0])[-1])
        upcoming[last_of_first] = True
        nsess[last_of_first] = 0
        term[last_of_first] = UPCOMING_TERM
        lec_title[last_of_first] = "2027 겨울방학 특강 (개설 예정)"
    lec_offline = np.where(rng.random(n_lec) < 0.35, 0.02, rng.uniform(0.1, 0.5, n_lec))
    lec_sess_off = np.cumsum(nsess) - nsess

    # Sessions, one weekly; a lecture meeting Thu-Sat skips the Chuseok week.
    s_lec, s_k = _expand(nsess)
    n_sess = s_lec.size
    sess_day = term[s_lec] + weekday[s_lec] + 7 * s_k
    sess_day = np.where(sess_day >= CHUSEOK[0], sess_day + 7 * (weekday[s_lec] >= 3), sess_day)
    sess_start = sess_day * DAY + hour[s_lec] * HOUR + minute[s_lec] * MINUTE
    sess_order = s_k + 1
    sess_date_null = (rng.random(n_sess) < 0.02) & (sess_day <= REF_DAY - 7) & (sess_order > 1)
    sess_id = 100_001 + np.arange(n_sess, dtype=np.int64)
    sess_title: list[str] = []
    for lec in range(n_lec):
        topics = TOPICS[topic_keys[lec]]
        shift = int(rng.integers(0, len(topics)))
        n = int(nsess[lec])
        for k in range(n):
            order = k + 1
            if order == 1:
                topic = "오리엔테이션 및 진단평가"
            elif order == n:
                topic = "총정리, 기말 대비"
            elif order % 10 == 0:
                topic = "단원 종합평가"
            else:
                topic = topics[(shift + k) % len(topics)]
            sess_title.append(f"{order}차시: {topic}")

    policies, eff = _build_policies(rng, lec_id, nsess)
    world = _World(
        lec_id=lec_id,
        lec_academy=lec_academy,
        lec_title=lec_title,
        lec_nsess=nsess,
        lec_sess_off=lec_sess_off,
        lec_offline=lec_offline,
        policies=policies,
        eff=eff,
        sess_id=sess_id,
        sess_lec=s_lec,
        sess_order=sess_order,
        sess_title=sess_title,
        sess_day=sess_day,
        sess_date_null=sess_date_null,
        sess_start=sess_start,
    )
    world.enr = _build_enrollments(rng, enrollments, lec_academy, term, nsess, upcoming)
    return world


def _build_policies(
    rng: np.random.Generator, lec_id: np.ndarray, nsess: np.ndarray
) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    n = lec_id.size
    has = rng.random(n) < 0.8
    if n >= 3:
        has[:3] = True  # lectures 0..2 cover the pass types, with and without a score
    if n >= 4 and has.all():
        has[-1] = False  # some lecture always runs on the default policy

    def nullable(p: float) -> np.ndarray:
        return rng.random(n) < p

    video = rng.choice([70, 80, 90, 95, 100], n, p=[0.1, 0.3, 0.3, 0.15, 0.15])
    exam_lo = rng.choice([0, 1, 2, 3], n, p=[0.05, 0.3, 0.5, 0.15])
    exam_hi = np.where(rng.random(n) < 0.4, 9999, np.maximum(nsess - rng.integers(0, 3, n), 3))
    exam_pass = rng.choice([50.0, 60.0, 65.5, 70.0, 80.0], n, p=[0.1, 0.45, 0.05, 0.3, 0.1])
    hw_lo = rng.choice([1, 2, 3], n, p=[0.4, 0.45, 0.15])
    hw_hi = np.where(rng.random(n) < 0.5, 9999, np.maximum(nsess - 1, 2))
    hw_type = rng.choice(4, n, p=[0.35, 0.3, 0.25, 0.1])  # index into HW_TYPES, 3 = null
    hw_score = rng.choice([60.0, 70.0, 70.0, 80.0], n)
    hw_score_null = np.where(hw_type == 1, rng.random(n) < 0.3, rng.random(n) < 0.9)
    if n >= 3:
        hw_type[:3] = [1, 1, 0]
        hw_score_null[:3] = [False, True, True]

    nulls = {
        "video_required_rate": nullable(0.15),
        "exam_start_session_order": nullable(0.15),
        "exam_end_session_order": nullable(0.2),
        "exam_pass_score": nullable(0.15),
        "homework_start_session_order": nullable(0.15),
        "homework_end_session_order": nullable(0.2),
        "homework_pass_type": hw_type == 3,
        "homework_pass_score": hw_score_null,
    }
    raw = {
        "video_required_rate": video,
        "exam_start_session_order": exam_lo,
        "exam_end_session_order": exam_hi,
        "exam_pass_score": exam_pass,
        "homework_start_session_order": hw_lo,
        "homework_end_session_order": hw_hi,
    }
    cols: dict[str, pl.Series] = {"lecture_id": pl.Series("lecture_id", lec_id)}
    for name, values in raw.items():
        dtype = pl.Float64 if name == "exam_pass_score" else pl.Int64
        cols[name] = _with_nulls(pl.Series(name, values, dtype=dtype), nulls[name])
    cols["homework_pass_type"] = _with_nulls(
        _pick(HW_TYPES, np.minimum(hw_type, 2)).alias("homework_pass_type"), hw_type == 3
    )
    cols["homework_pass_score"] = _with_nulls(
        pl.Series("homework_pass_score", hw_score, dtype=pl.Float64), hw_score_null
    )
    policies = pl.DataFrame(list(cols.values())).filter(pl.Series(has))

    eff: dict[str, np.ndarray] = {}
    for name, values in raw.items():
        use_default = ~has | nulls[name]
        eff[name] = np.where(use_default, DEFAULT_POLICY[name], values)
    type_idx = np.where(~has | (hw_type == 3), 2, hw_type)
    eff["homework_pass_type"] = type_idx
    eff["homework_pass_score"] = np.where(~has | hw_score_null, np.nan, hw_score)
    eff["has_policy"] = has
    return policies, eff


def _build_enrollments(
    rng: np.random.Generator,
    n: int,
    lec_academy: np.ndarray,
    term: np.ndarray,
    nsess: np.ndarray,
    upcoming: np.ndarray,
) -> dict[str, np.ndarray]:
    n_lec = lec_academy.size
    weights = rng.gamma(4.0, 1.0, n_lec) * np.where(upcoming, 0.15, 1.0)
    sizes = rng.multinomial(n, weights / weights.sum())
    lec, within = _expand(sizes)

    # Students: a pool per academy; a lecture takes a contiguous window of a shuffled pool, so a
    # student never enrolls twice in one lecture but takes several lectures of the academy.
    student = np.zeros(n, dtype=np.int64)
    n_students = 0
    student_type_parts = []
    for a in np.unique(lec_academy).tolist():
        in_a = lec_academy == a
        pool = max(int(math.ceil(sizes[in_a].sum() / 2.4)), int(sizes[in_a].max(initial=1)), 1)
        perm = rng.permutation(pool).astype(np.int64)
        starts = rng.integers(0, pool, n_lec)
        rows = np.flatnonzero(in_a[lec])
        student[rows] = 200_001 + n_students + perm[(starts[lec[rows]] + within[rows]) % pool]
        student_type_parts.append(rng.choice(3, pool, p=[0.38, 0.47, 0.15]))
        n_students += pool
    student_type = np.concatenate(student_type_parts) if student_type_parts else np.zeros(0, int)
    etype = student_type[student - 200_001] if n else np.zeros(0, dtype=np.int64)
    flip = rng.random(n) < 0.2  # the same student does better in one subject than another
    etype = np.where(flip, rng.choice(3, n, p=[0.38, 0.47, 0.15]), etype)

    # Enrollment time: before the term starts, a few late enrollees, a few unknown.
    term_start = term[lec] * DAY
    late = rng.random(n) < 0.06
    enr_at = np.where(
        late,
        term_start + rng.integers(3 * DAY, 30 * DAY, n),
        term_start - rng.integers(1 * DAY, 30 * DAY, n),
    )
    enr_at = (enr_at // DAY) * DAY + rng.integers(9 * HOUR, 23 * HOUR, n)
    enr_at = np.minimum(enr_at, EXTRACT_AT - rng.integers(HOUR, 5 * DAY, n))
    enr_at_null = rng.random(n) < 0.015

    # Status: struggling students drop more; dropped ones stop some weeks into the term.
    dropped = rng.random(n) < np.array([0.03, 0.07, 0.18])[etype]
    status = np.where(dropped, 1, np.where(rng.random(n) < 0.06, 2, 0))  # ACTIVE/DROPPED/null
    drop_at = np.where(
        dropped, term_start + rng.integers(3, 22, n) * 7 * DAY, np.iinfo(np.int64).max
    )
    # a few stop coming without being marked DROPPED (some weeks before the extract)
    silent = ~dropped & (rng.random(n) < np.array([0.005, 0.015, 0.08])[etype])
    drop_at = np.where(silent, (REF_DAY - rng.integers(3, 45, n)) * DAY, drop_at)

    # Slumps: stretches of absence ("absent") or of showing up but failing exams ("low").
    ns = np.maximum(nsess[lec], 1)
    p_slump = np.array([0.05, 0.2, 1.0])[etype]
    s1_len = np.where(rng.random(n) < p_slump, rng.integers(1, 8, n), 0)
    s1_len = np.where(etype == 2, np.maximum(s1_len, 2), s1_len)
    s1_start = rng.integers(1, 1_000_000, n) % ns + 1
    s2_len = np.where((etype == 2) & (rng.random(n) < 0.5), rng.integers(2, 6, n), 0)
    s2_start = rng.integers(1, 1_000_000, n) % ns + 1

    # Order enrollments by time: enrollment ids grow with enrolled_at.
    order = np.lexsort((np.arange(n), enr_at))
    out = {
        "lec": lec,
        "student": student,
        "type": etype,
        "enr_at": enr_at,
        "enr_at_null": enr_at_null,
        "status": status,
        "drop_at": drop_at,
        "s1_start": s1_start,
        "s1_len": s1_len,
        "s1_kind": rng.integers(0, 2, n),
        "s2_start": s2_start,
        "s2_len": s2_len,
        "s2_kind": rng.integers(0, 2, n),
    }
    out = {k: v[order] for k, v in out.items()}
    out["id"] = 5_000_001 + np.arange(n, dtype=np.int64)
    return out


def _reference_frames(w: _World) -> dict[str, pl.DataFrame]:
    e = w.enr
    sess_date = pl.Series("session_date", w.sess_day.astype(np.int32)).cast(pl.Date)
    return {
        "lectures": pl.DataFrame(
            {"lecture_id": w.lec_id, "academy_id": w.lec_academy, "title": w.lec_title},
            schema={"lecture_id": pl.Int64, "academy_id": pl.Int64, "title": pl.String},
        ),
        "sessions": pl.DataFrame(
            [
                pl.Series("session_id", w.sess_id),
                pl.Series("lecture_id", w.lec_id[w.sess_lec]),
                pl.Series("session_order", w.sess_order),
                pl.Series("title", w.sess_title, dtype=pl.String),
                _with_nulls(sess_date, w.sess_date_null),
            ]
        ),
        "policies": w.policies,
        "enrollments": pl.DataFrame(
            [
                pl.Series("enrollment_id", e["id"]),
                pl.Series("lecture_id", w.lec_id[e["lec"]]),
                pl.Series("student_id", e["student"]),
                _with_nulls(
                    _pick(("ACTIVE", "DROPPED", "ACTIVE"), e["status"]).alias("status"),
                    e["status"] == 2,
                ),
                _ts_series("enrolled_at", e["enr_at"], e["enr_at_null"]),
            ]
        ),
    }


# ---------------------------------------------------------------------------------------------
# Events of one chunk of enrollments.


def _simulate_chunk(
    w: _World, lo: int, hi: int, rng: np.random.Generator, first_submission_id: int
) -> dict[str, pl.DataFrame]:
    e = {k: v[lo:hi] for k, v in w.enr.items()}
    lec = e["lec"]
    pe, k = _expand(w.lec_nsess[lec])
    ps = w.lec_sess_off[lec][pe] + k
    start = w.sess_start[ps]
    active = (start >= e["enr_at"][pe]) & (start < e["drop_at"][pe])
    held = w.sess_day[ps] <= REF_DAY
    # A few diligent students pre-watch next week's video, released early.
    pre = active & ~held & (w.sess_day[ps] <= REF_DAY + 7) & (e["type"][pe] == 0)
    pre &= rng.random(pe.size) < 0.25
    pre_e, pre_s = pe[pre], ps[pre]

    keep = active & held
    pe, ps, k, start = pe[keep], ps[keep], k[keep], start[keep]
    n = pe.size
    order = k + 1
    etype = e["type"][pe]
    plec = lec[pe]

    def in_slump(i: int) -> tuple[np.ndarray, np.ndarray]:
        s0, ln, kind = e[f"s{i}_start"][pe], e[f"s{i}_len"][pe], e[f"s{i}_kind"][pe]
        inside = (order >= s0) & (order < s0 + ln)
        return inside & (kind == 0), inside & (kind == 1)

    absent1, low1 = in_slump(1)
    absent2, low2 = in_slump(2)
    absent = absent1 | absent2
    low = (low1 | low2) & ~absent

    p_show = np.array([0.98, 0.94, 0.78])[etype]
    p_show = np.where(absent, 0.12, np.where(low, 0.95, p_show))
    show = rng.random(n) < p_show
    offline = show & (rng.random(n) < w.lec_offline[plec])
    online = show & ~offline
    delay = np.where(
        rng.random(n) < 0.6, rng.integers(2 * HOUR, 5 * HOUR, n), rng.integers(5 * HOUR, 5 * DAY, n)
    )
    watch_t = np.where(offline, start + rng.integers(DAY, 4 * DAY, n), start + delay)

    # --- attendance: one row per attended session, sometimes a correction or a second visit.
    n_att = (offline | (online & (rng.random(n) < 0.93))).astype(np.int64)
    extra = show & (rng.random(n) < 0.06)
    n_att += extra + (extra & (rng.random(n) < 0.3))
    ap, ak = _expand(n_att)
    first_t = np.where(offline, start + rng.integers(-15 * MINUTE, 10 * MINUTE, n), watch_t)
    inc = np.where(ak == 0, 0, rng.integers(HOUR, 2 * DAY, ap.size))
    att_t = first_t[ap] + _group_cumsum(inc, ak)
    att_type = np.where(ak == 0, offline[ap], rng.random(ap.size) < 0.5).astype(np.int64)
    attendance = pl.DataFrame(
        [
            pl.Series("enrollment_id", e["id"][pe[ap]]),
            pl.Series("session_id", w.sess_id[ps[ap]]),
            _pick(("online", "offline"), att_type).alias("attendance_type"),
            pl.Series("recorded_at", att_t),
        ]
    )

    # --- video_progress: several increasing progress reports per watched session.
    partial = ~show & (rng.random(n) < 0.08)
    review = offline & (rng.random(n) < 0.12)
    has_vid = online | partial | review
    n_vid = has_vid * (1 + rng.binomial(4, 0.45, n))
    # most viewers finish the video; the others stop somewhere, struggling ones earlier
    finish = rng.random(n) < np.where(low, 0.9, np.array([0.96, 0.88, 0.65])[etype])
    stop = 100 - np.floor(rng.exponential(np.array([8.0, 15.0, 35.0])[etype]))
    final = np.where(
        online,
        np.where(finish, 100, stop),
        np.where(review, rng.integers(20, 101, n), rng.integers(5, 61, n)),
    )
    final = np.clip(final, 0, 100)
    vp, vk = _expand(n_vid)
    last = np.r_[vp[1:] != vp[:-1], True] if vp.size else np.zeros(0, dtype=bool)
    u = np.where(last, 1.0, rng.uniform(0.1, 0.98, vp.size))
    u = u[np.lexsort((u, vp))]  # increasing within each session's reports
    rate = np.floor(u * final[vp]).astype(np.int64)
    vid_start = np.where(partial, start + rng.integers(HOUR, 4 * DAY, n), watch_t)
    vid_t = vid_start[vp] + _group_cumsum(rng.integers(2 * MINUTE, 20 * MINUTE, vp.size), vk)
    # pre-released videos of next week's session
    npre = pre_e.size
    pre_t = np.minimum(w.sess_start[pre_s] - HOUR, EXTRACT_AT) - rng.integers(HOUR, 3 * DAY, npre)
    video = pl.DataFrame(
        [
            pl.Series("enrollment_id", np.r_[e["id"][pe[vp]], e["id"][pre_e]]),
            pl.Series("session_id", np.r_[w.sess_id[ps[vp]], w.sess_id[pre_s]]),
            pl.Series("progress_rate", np.r_[rate, rng.integers(30, 101, npre)]),
            pl.Series("recorded_at", np.r_[vid_t, pre_t]),
        ]
    )

    # --- exams: within the policy window (rarely outside), retakes after failing.
    ex_lo = w.eff["exam_start_session_order"][plec]
    ex_hi = w.eff["exam_end_session_order"][plec]
    pass_score = w.eff["exam_pass_score"][plec]
    given = ((order >= ex_lo) & (order <= ex_hi)) | (rng.random(n) < 0.03)
    take = given & (show | (rng.random(n) < 0.05))
    mean = np.array([20.0, 13.0, -2.0])[etype]
    mean = np.where(low, -20.0, mean)
    first = np.clip(pass_score + rng.normal(mean, np.where(low, 9.0, 10.0)), 0, 100)
    failed_first = first < pass_score
    n_ex = take * (
        1
        + (failed_first & (rng.random(n) < 0.35))
        + (failed_first & (rng.random(n) < 0.1))
        + (~failed_first & (rng.random(n) < 0.03))
    )
    xp, xk = _expand(n_ex)
    x_score = np.clip(first[xp] + xk * rng.normal(9.0, 5.0, xp.size), 0, 100)
    x_score = np.where(rng.random(xp.size) < 0.2, np.round(x_score * 2) / 2, np.round(x_score))
    x_null = rng.random(xp.size) < 0.03  # attempt not graded yet / absent from the test
    ex_first_t = np.where(
        offline,
        start + rng.integers(60 * MINUTE, 100 * MINUTE, n),
        watch_t + rng.integers(40 * MINUTE, 3 * HOUR, n),
    )
    x_inc = np.where(xk == 0, 0, rng.integers(DAY, 4 * DAY, xp.size))
    x_t = ex_first_t[xp] + _group_cumsum(x_inc, xk)

    # --- homework: within the window; score and teacher approval depending on the pass type.
    hw_lo = w.eff["homework_start_session_order"][plec]
    hw_hi = w.eff["homework_end_session_order"][plec]
    hw_type = w.eff["homework_pass_type"][plec]
    hw_app = ((order >= hw_lo) & (order <= hw_hi)) | (rng.random(n) < 0.03)
    p_hw = np.array([0.98, 0.92, 0.68])[etype] * np.where(show, 1.0, 0.3)
    p_hw = np.where(absent, 0.1, p_hw)
    n_hw = (hw_app & (rng.random(n) < p_hw)) * (1 + (rng.random(n) < 0.08))
    hp, hk = _expand(n_hw)
    nh = hp.size
    h_score = np.round(np.clip(rng.normal(np.array([95.0, 89.0, 72.0])[etype[hp]], 8.0), 0, 100))
    h_score_null = rng.random(nh) >= np.where(hw_type[hp] == 1, 0.95, 0.3)
    p_ok = np.array([0.97, 0.9, 0.65])[etype[hp]]
    p_ok = np.where(~h_score_null & (h_score < 60), 0.2, p_ok)
    r = rng.random(nh)
    h_appr = r < p_ok
    h_appr_null = np.where(hw_type[hp] == 0, rng.random(nh) < 0.8, rng.random(nh) < 0.05)
    # homework is mostly handed in within two days, before the next class at the latest
    h_first = np.where(
        rng.random(nh) < 0.75,
        rng.integers(3 * HOUR, 2 * DAY, nh),
        rng.integers(2 * DAY, 6 * DAY, nh),
    )
    h_inc = np.where(hk == 0, h_first, rng.integers(HOUR, 2 * DAY, nh))
    h_t = start[hp] + _group_cumsum(h_inc, hk)

    sub_t = np.r_[x_t, h_t]
    sub_ok = sub_t <= EXTRACT_AT
    sub_order = np.flatnonzero(sub_ok)[np.argsort(sub_t[sub_ok], kind="stable")]
    sub_pe = np.r_[pe[xp], pe[hp]][sub_order]
    sub_ps = np.r_[ps[xp], ps[hp]][sub_order]
    n_sub = sub_order.size
    submissions = pl.DataFrame(
        [
            pl.Series("submission_id", first_submission_id + np.arange(n_sub, dtype=np.int64)),
            pl.Series("enrollment_id", e["id"][sub_pe]),
            pl.Series("session_id", w.sess_id[sub_ps]),
            _pick(
                ("exam", "homework"),
                (np.arange(xp.size + nh) >= xp.size)[sub_order].astype(np.int64),
            ).alias("kind"),
            _with_nulls(
                pl.Series("score", np.r_[x_score, h_score]), np.r_[x_null, h_score_null]
            ).gather(sub_order),
            _with_nulls(
                pl.Series("teacher_approved", np.r_[np.zeros(xp.size, bool), h_appr]),
                np.r_[np.ones(xp.size, bool), h_appr_null],
            ).gather(sub_order),
            pl.Series("submitted_at", sub_t[sub_order]),
        ]
    )

    # --- clinic requests: teachers' decisions on auto links, manual and recommended requests.
    no_hw = hw_app & (n_hw == 0)
    failedish = ~show | (take & failed_first) | no_hw
    slump_second = np.zeros(n, dtype=bool)
    for i in (1, 2):
        s0, ln = e[f"s{i}_start"][pe], e[f"s{i}_len"][pe]
        slump_second |= (ln >= 2) & ((order == s0 + 1) | (order == s0 + 2))
    wants = [
        failedish & (rng.random(n) < 0.35),
        slump_second & (rng.random(n) < 0.5),
        show & (rng.random(n) < 0.01),
        take & failed_first & (rng.random(n) < 0.05),
    ]
    cl_p, cl_r = [], []
    for ri, m in enumerate(wants):
        idx = np.flatnonzero(m)
        cl_p.append(idx)
        cl_r.append(np.full(idx.size, ri))
    cp = np.concatenate(cl_p)
    cr = np.concatenate(cl_r)
    nc = cp.size
    # typed into the admin UI during working hours, to the minute
    c_t = (start[cp] // DAY + rng.integers(2, 7, nc)) * DAY + rng.integers(
        10 * 60, 22 * 60, nc
    ) * MINUTE
    r = rng.random(nc)
    c_appr = np.where(cr >= 2, r < 0.85, r < 0.65)
    c_appr_null = rng.random(nc) < 0.15
    # a follow-up decision on some requests (first refused or pending, later approved)
    fu = rng.random(nc) < 0.08
    fu_idx = np.flatnonzero(fu)
    cp = np.r_[cp, cp[fu_idx]]
    cr = np.r_[cr, cr[fu_idx]]
    c_t = np.r_[c_t, c_t[fu_idx] + rng.integers(1, 5, fu_idx.size) * DAY + HOUR]
    c_appr = np.r_[np.where(fu, False, c_appr), np.ones(fu_idx.size, bool)]
    c_appr_null = np.r_[c_appr_null & ~fu, np.zeros(fu_idx.size, bool)]
    nc = cp.size
    memo_lists = [MEMOS[reason] for reason in CLINIC_REASONS]
    flat_memos = [m for lst in memo_lists for m in lst]
    memo_off = np.cumsum([0] + [len(lst) for lst in memo_lists])[:-1]
    memo_len = np.array([len(lst) for lst in memo_lists])
    memo_idx = memo_off[cr] + rng.integers(0, 1_000_000, nc) % memo_len[cr]
    memo_null = rng.random(nc) < np.where(cr >= 2, 0.2, 0.6)
    c_ok = c_t <= EXTRACT_AT
    c_order = np.flatnonzero(c_ok)[np.argsort(c_t[c_ok], kind="stable")]
    clinic = pl.DataFrame(
        [
            pl.Series("enrollment_id", e["id"][pe[cp]]),
            pl.Series("session_id", w.sess_id[ps[cp]]),
            _pick(CLINIC_REASONS, cr).alias("reason"),
            _with_nulls(pl.Series("approved", c_appr), c_appr_null),
            _with_nulls(_pick(flat_memos, memo_idx).alias("memo"), memo_null),
            pl.Series("requested_at", c_t),
        ]
    )[c_order]

    out = {
        "attendance": attendance,
        "video_progress": video,
        "submissions": submissions,
        "clinic_requests": clinic,
    }
    for table, df in out.items():
        col = TS_COLUMNS[table]
        df = df.filter(pl.col(col) <= EXTRACT_AT)
        if table in ("attendance", "video_progress"):
            df = df.sort(col, maintain_order=True)
        out[table] = df.with_columns(pl.col(col).cast(pl.Int64) * 1_000_000).with_columns(
            pl.col(col).cast(pl.Datetime("us"))
        )
    return out


# ---------------------------------------------------------------------------------------------
# Outcomes (contract section 5): what became of the enrollments, from their own random stream.

RESULTS = ("PASS", "FAIL", "WITHDRAWN")


def _simulate_outcomes(w: _World, rng: np.random.Generator) -> pl.DataFrame:
    """One row per enrollment whose result is known at the extract time (see the module doc)."""
    e = w.enr
    n = e["id"].size
    lec = e["lec"]
    nsess = w.lec_nsess[lec]
    last_day = (
        np.where(
            nsess > 0, w.sess_day[np.maximum(w.lec_sess_off[lec] + nsess - 1, 0)], REF_DAY + 365
        )
        if w.sess_day.size
        else np.full(n, REF_DAY + 365)
    )
    ended = last_day <= REF_DAY - 2  # decided on a later day, before the nightly extract
    dropped = e["status"] == 1
    left = e["drop_at"] < np.iinfo(np.int64).max  # dropped, or stopped coming unannounced
    silent = left & ~dropped

    # a stretch of absences (kind 0) or failed exams (kind 1) running into the last sessions
    late = np.zeros(n, dtype=np.int64)
    slumped = np.zeros(n, dtype=np.int64)
    for i in (1, 2):
        start, length, kind = e[f"s{i}_start"], e[f"s{i}_len"], e[f"s{i}_kind"]
        reaches_end = (length > 0) & (start + length - 1 >= nsess - 4)
        late = np.maximum(late, np.where(reaches_end, np.where(kind == 0, 2, 1), 0))
        slumped += length
    logit = np.array([-3.2, -1.8, -0.4])[e["type"]] + np.array([0.0, 1.2, 2.2])[late]
    logit += 0.12 * slumped
    fail = rng.random(n) < 1 / (1 + np.exp(-logit))
    u = rng.random(n)
    result = np.where(fail, 1, 0)
    result = np.where(rng.random(n) < 0.02, 2, result)  # a few leave at the very end
    result = np.where(silent, np.where(u < 0.45, 2, np.where(u < 0.95, 1, 0)), result)
    result = np.where(dropped, np.where(u < 0.85, 2, 1), result)

    # decided 1-14 days after the lecture's last session, or after the student left
    after_last = last_day + 1 + rng.integers(0, 14, n) % np.maximum(REF_DAY - 1 - last_day, 1)
    stopped_day = np.minimum(e["drop_at"], EXTRACT_AT) // DAY
    after_leaving = stopped_day + rng.integers(3, 22, n)
    day = np.where(ended, after_last, after_leaving)
    has = ended | (left & (result == 2) & (after_leaving <= REF_DAY - 1))
    has &= rng.random(n) >= 0.03  # a few results are not recorded yet
    at = day * DAY + rng.integers(10 * HOUR, 19 * HOUR, n) // MINUTE * MINUTE
    at_null = rng.random(n) < 0.04
    keep = np.flatnonzero(has)
    return pl.DataFrame(
        [
            pl.Series("enrollment_id", e["id"][keep]),
            _pick(RESULTS, result[keep]).alias("result"),
            _with_nulls(_ts_series("decided_at", at[keep]), at_null[keep]),
        ]
    )


def _outcome_bad(outcomes: pl.DataFrame, rng: np.random.Generator) -> _Bad:
    """Bad outcome rows of every kind that applies (within the usual budget)."""
    bad = _Bad("outcomes")
    rows = _row_dicts(outcomes.sample(min(outcomes.height, 6), seed=int(rng.integers(2**31))))
    if len(rows) < 6:
        return bad
    other = {"PASS": "FAIL", "FAIL": "PASS", "WITHDRAWN": "FAIL"}
    bad.add(None, 0, rows[0])  # a re-delivery
    bad.add("unknown_reference", 1, {**rows[1], "enrollment_id": str(UNKNOWN_ID + 900)})
    bad.add("invalid_enum", 1, {**rows[2], "result": rows[2]["result"].capitalize()})
    # the original is delivered already: the conflicting copy quarantines both
    bad.add("duplicate_conflict", 2, {**rows[3], "result": other[rows[3]["result"]]})
    bad.add("missing_value", 1, {**rows[4], "result": None})
    bad.add("invalid_type", 1, {**rows[5], "decided_at": "2026-11-31 10:00"})
    return bad


# ---------------------------------------------------------------------------------------------
# Writing.

_TS_VARIANTS: tuple[tuple[float, int, str], ...] = (
    # (share, shift seconds, format): all denote the same instant as the local value
    (0.020, -SEOUL_OFFSET, "%Y-%m-%dT%H:%M:%SZ"),
    (0.015, 0, "%Y-%m-%dT%H:%M:%S+09:00"),
    (0.005, 0, "%Y-%m-%d %H:%M:%S+0900"),
    (0.005, 0, "%Y-%m-%dT%H:%M:%S"),
    (0.003, 0, "%Y-%m-%d %H:%M:%S.000"),
    (0.002, 0, "%Y-%m-%dT%H:%M:%S+09"),
    (0.001, -14 * HOUR, "%Y-%m-%dT%H:%M:%S-05:00"),
    (0.001, -SEOUL_OFFSET, "%Y-%m-%dT%H:%M:%S.000000Z"),
)


def _ts_text(s: pl.Series, rng: np.random.Generator) -> pl.Series:
    """Local timestamps as CSV text: mostly 'YYYY-MM-DD HH:MM:SS', a few in other valid forms."""
    out = s.dt.strftime("%Y-%m-%d %H:%M:%S")
    n = s.len()
    if n == 0:
        return out
    u = rng.random(n)
    valid = s.is_not_null().to_numpy()
    lo = 0.0
    for share, shift, fmt in _TS_VARIANTS:
        idx = np.flatnonzero((u >= lo) & (u < lo + share) & valid)
        lo += share
        if idx.size:
            shifted = s.gather(idx).dt.offset_by(f"{shift}s") if shift else s.gather(idx)
            out = out.scatter(idx, shifted.dt.strftime(fmt))
    # whole minutes are sometimes written without seconds
    secs = s.dt.second().to_numpy()
    idx = np.flatnonzero((secs == 0) & (u > 0.95) & valid)
    if idx.size:
        out = out.scatter(idx, s.gather(idx).dt.strftime("%Y-%m-%d %H:%M"))
    return out


def _bool_text(s: pl.Series, rng: np.random.Generator) -> pl.Series:
    out = s.cast(pl.String)
    n = s.len()
    if n == 0:
        return out
    u = rng.random(n)
    valid = s.is_not_null().to_numpy()
    for lo, hi, t, f in (
        (0.0, 0.03, "1", "0"),
        (0.03, 0.04, "TRUE", "FALSE"),
        (0.04, 0.045, "True", "False"),
    ):
        idx = np.flatnonzero((u >= lo) & (u < hi) & valid)
        if idx.size:
            vals = s.gather(idx)
            out = out.scatter(
                idx, pl.select(pl.when(vals).then(pl.lit(t)).otherwise(pl.lit(f))).to_series()
            )
    return out


def _as_text(df: pl.DataFrame, table: str, rng: np.random.Generator, pad: bool) -> pl.DataFrame:
    """The CSV text of a typed frame (every column String); with pad, some values padded."""
    cols = []
    for name in COLUMNS[table]:
        s = df[name]
        if s.dtype == pl.Datetime("us"):
            t = _ts_text(s, rng)
        elif s.dtype == pl.Date:
            t = s.dt.strftime("%Y-%m-%d")
        elif s.dtype == pl.Boolean:
            t = _bool_text(s, rng)
        else:
            t = s.cast(pl.String)
        if pad and t.len():
            idx = np.flatnonzero(rng.random(t.len()) < 0.002)
            if idx.size:
                pads = _pick((" ", "  ", "\t", " \t"), rng.integers(0, 4, idx.size))
                vals = t.gather(idx)
                left = rng.random(idx.size) < 0.5
                padded = pl.select(
                    pl.when(pl.lit(pl.Series(left)))
                    .then(pl.lit(pads) + pl.lit(vals))
                    .otherwise(pl.lit(vals) + pl.lit(pads))
                ).to_series()
                keep = vals.is_not_null().to_numpy()
                t = t.scatter(idx[keep], padded.filter(pl.Series(keep)))
        cols.append(t.alias(name))
    return pl.DataFrame(cols)


def _parquet_typed(df: pl.DataFrame, table: str, style: int) -> pl.DataFrame:
    """Native parquet columns; style varies integer widths and timestamp units/zones per file."""
    exprs = []
    for name in COLUMNS[table]:
        dtype = df.schema[name]
        col = pl.col(name)
        if dtype == pl.Datetime("us"):
            if style == 1:
                col = (col - pl.duration(hours=9)).dt.replace_time_zone("UTC")
            elif style == 2:
                col = col.cast(pl.Datetime("ms"))
        elif name in ("progress_rate", "video_required_rate"):
            col = col.cast(pl.Int16)
        elif name in ("session_order",) or (style == 2 and name == "session_id"):
            col = col.cast(pl.Int32)
        exprs.append(col)
    return df.select(exprs)


def _messy(df: pl.DataFrame, table: str, rng: np.random.Generator, csv: bool) -> pl.DataFrame:
    """Another export tool: columns in another order, an extra column, padded header names."""
    graders = ("김지훈", "이서연", "박민준")
    extra = _pick(graders, rng.integers(0, 3, df.height)).alias("graded_by")
    df = df.with_columns(extra).select(["graded_by", *reversed(COLUMNS[table])])
    if csv:
        df = df.rename({COLUMNS[table][-1]: f" {COLUMNS[table][-1]} "})
    return df


def _splice(clean: pl.DataFrame, bad: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Bad rows (text) inserted at random positions among the clean rows (text)."""
    if bad.height == 0:
        return clean
    keys = np.r_[
        np.arange(clean.height, dtype=np.float64), rng.uniform(0, clean.height, bad.height)
    ]
    order = np.argsort(keys, kind="stable")
    return pl.concat([clean, bad.select(clean.columns)])[order]


class _Writer:
    def __init__(self, out: Path, fmt: str, rng: np.random.Generator, pad: bool) -> None:
        self.out, self.fmt, self.rng, self.pad = out, fmt, rng, pad
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.files: list[str] = []  # every file written, relative to `out`
        self._clinic_handle: Any = None
        self._clinic_parts: list[Path] = []

    def write(
        self,
        table: str,
        df: pl.DataFrame,
        rel: str,
        *,
        style: int = 0,
        bad: pl.DataFrame | None = None,
        messy: bool = False,
    ) -> None:
        """Write one file of clean typed rows; bad text rows are spliced in (CSV) or written to
        `<rel>/part-000` as an all-text file (Parquet, single-file tables). A messy file has
        another export tool's header: other column order, an extra column, padded names."""
        path = self.out / f"{rel}.{self.fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(f"{rel}.{self.fmt}")
        if self.fmt == "csv":
            text = _as_text(df, table, self.rng, self.pad)
            if bad is not None:
                text = _splice(text, bad, self.rng)
            (_messy(text, table, self.rng, csv=True) if messy else text).write_csv(path)
            self.rows[table] += text.height
        else:
            typed = _parquet_typed(df, table, style)
            (_messy(typed, table, self.rng, csv=False) if messy else typed).write_parquet(
                path, row_group_size=ROW_GROUP, compression="zstd", statistics=True
            )
            self.rows[table] += df.height
            if bad is not None and bad.height:  # single-file tables: a folder next to it
                self.write_text(table, bad, f"{rel}/part-000")

    def write_text(self, table: str, bad: pl.DataFrame, rel: str) -> None:
        """An all-text Parquet file of bad rows (the contract allows text for any column)."""
        path = self.out / f"{rel}.{self.fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(f"{rel}.{self.fmt}")
        bad.select(COLUMNS[table]).write_parquet(path, row_group_size=ROW_GROUP, compression="zstd")
        self.rows[table] += bad.height

    # clinic_requests is one file written chunk by chunk
    def append_clinic(self, df: pl.DataFrame, bad: pl.DataFrame | None, final: bool) -> None:
        path = self.out / f"clinic_requests.{self.fmt}"
        if final:
            self.files.append(path.name)
        if self.fmt == "csv":
            text = _as_text(df, "clinic_requests", self.rng, self.pad)
            if bad is not None:
                text = _splice(text, bad, self.rng)
            if self._clinic_handle is None:
                self._clinic_handle = open(path, "wb")  # noqa: SIM115 (closed at final)
                text.write_csv(self._clinic_handle, include_header=True)
            else:
                text.write_csv(self._clinic_handle, include_header=False)
            self.rows["clinic_requests"] += text.height
            if final:
                self._clinic_handle.close()
        else:
            # spool chunk files, then stream them into one file (bounded memory, polars only)
            spool = self.out / ".clinic_requests.spool"
            spool.mkdir(exist_ok=True)
            part = spool / f"part-{len(self._clinic_parts):05d}.parquet"
            _parquet_typed(df, "clinic_requests", 0).write_parquet(part, compression="zstd")
            self._clinic_parts.append(part)
            self.rows["clinic_requests"] += df.height
            if final:
                pl.scan_parquet(self._clinic_parts).sink_parquet(
                    path, compression="zstd", row_group_size=ROW_GROUP, maintain_order=True
                )
                shutil.rmtree(spool)
                if bad is not None and bad.height:
                    self.write_text("clinic_requests", bad, "clinic_requests/part-000")


# ---------------------------------------------------------------------------------------------
# Bad rows.


def _txt(v: Any) -> str | None:
    """Canonical text of a parsed value (what a clean CSV export would say)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M:%S") if hasattr(v, "hour") else v.strftime("%Y-%m-%d")
    return str(v)


@dataclass
class _Bad:
    """Bad rows of one table, in priority order, with the quarantine they should cause."""

    table: str
    items: list[tuple[str | None, int, list[dict[str, str | None]]]] = field(default_factory=list)

    def add(self, reason: str | None, quarantined: int, *rows: dict[str, Any]) -> None:
        self.items.append(
            (reason, quarantined, [{c: r.get(c) for c in COLUMNS[self.table]} for r in rows])
        )

    def take(self, delivered_clean: int) -> tuple[pl.DataFrame, dict[str, int], int]:
        """Rows that fit the budget; exact re-deliveries (reason None) always fit."""
        budget = math.floor(BAD_SHARE * delivered_clean)
        rows: list[dict[str, str | None]] = []
        expected: dict[str, int] = {}
        collapsed = 0
        used = 0
        for reason, q, rs in self.items:
            if reason is not None and used + q > budget:
                continue
            rows.extend(rs)
            if reason is None:
                collapsed += len(rs)
            else:
                used += q
                expected[reason] = expected.get(reason, 0) + q
                collapsed += len(rs) - q if reason == "unknown_reference" else 0
        frame = pl.DataFrame(
            rows, schema=dict.fromkeys(COLUMNS[self.table], pl.String), orient="row"
        )
        return frame, expected, collapsed


def _row_dicts(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _txt(v) for k, v in r.items()} for r in df.iter_rows(named=True)]


def _shift_ts(text: str, seconds: int) -> str:
    t = np.datetime64(text.replace(" ", "T"), "s") + np.timedelta64(seconds, "s")
    return str(t).replace("T", " ")


def _z_form(text: str) -> str:
    return _shift_ts(text, -SEOUL_OFFSET).replace(" ", "T") + "Z"


def _build_bad(
    w: _World,
    ref: dict[str, pl.DataFrame],
    samples: dict[str, pl.DataFrame],
    next_submission_id: int,
) -> dict[str, _Bad]:
    bad = {t: _Bad(t) for t in TABLES}
    unknown = iter(range(UNKNOWN_ID, UNKNOWN_ID + 1000))

    # ---- lectures (only quarantines when the table is large enough)
    lec_rows = _row_dicts(ref["lectures"].head(2))
    new_lec = int(w.lec_id.max()) + 1
    b = bad["lectures"]
    b.add(None, 0, {**lec_rows[0], "title": f"  {lec_rows[0]['title']} "})  # re-delivery, padded
    b.add("missing_value", 1, {"lecture_id": str(new_lec), "academy_id": "", "title": "신규 강좌"})
    b.add("invalid_type", 1, {"lecture_id": "L-1001", "academy_id": "1", "title": "코드 오류 강좌"})
    b.add(
        "duplicate_conflict",
        2,
        {"lecture_id": str(new_lec + 1), "academy_id": "1", "title": "고1 수학 기본반 (월)"},
        {"lecture_id": str(new_lec + 1), "academy_id": "1", "title": "고1 수학 기본반 (수)"},
    )

    # ---- policies: bad rows target lectures without a policy (they keep the default)
    b = bad["policies"]
    pol_rows = _row_dicts(ref["policies"].head(1))
    if pol_rows:
        b.add(None, 0, pol_rows[0])
    no_pol = [int(x) for x in w.lec_id[~w.eff["has_policy"]]]
    base_pol = {
        "video_required_rate": "90",
        "exam_start_session_order": "2",
        "exam_end_session_order": "9999",
        "exam_pass_score": "60",
        "homework_start_session_order": "2",
        "homework_end_session_order": "9999",
        "homework_pass_type": "SUBMIT",
        "homework_pass_score": "",
    }
    if no_pol:

        def lid(i: int) -> str:
            return str(no_pol[i % len(no_pol)])

        b.add("invalid_enum", 1, {**base_pol, "lecture_id": lid(0), "homework_pass_type": "submit"})
        b.add("out_of_range", 1, {**base_pol, "lecture_id": lid(1), "video_required_rate": "120"})
        b.add("invalid_type", 1, {**base_pol, "lecture_id": lid(2), "exam_pass_score": "육십점"})
        b.add("unknown_reference", 1, {**base_pol, "lecture_id": str(next(unknown))})
        b.add(
            "duplicate_conflict",
            2,
            {**base_pol, "lecture_id": lid(3)},
            {**base_pol, "lecture_id": lid(3), "exam_pass_score": "70"},
        )
        b.add("missing_value", 1, {**base_pol, "lecture_id": "   "})

    # ---- sessions: fresh ids, so that no event depends on them
    b = bad["sessions"]
    sess_rows = _row_dicts(ref["sessions"].head(3))
    new_sess = int(w.sess_id.max()) + 1 if w.sess_id.size else 100_001
    lec0 = str(int(w.lec_id[0]))

    def mk(i: int, **kw: str) -> dict[str, str]:
        return {
            "session_id": str(new_sess + i),
            "lecture_id": lec0,
            "session_order": "31",
            "title": "31차시: 보충 특강",
            "session_date": "2026-12-01",
            **kw,
        }

    bad_session_unknown = mk(
        0,
        lecture_id=str(next(unknown)),
        session_order="1",
        title="1차시: 폐강된 강좌",
        session_date="2026-03-03",
    )
    bad_session_order0 = mk(1, session_order="0", title="0차시: 예비 소집")
    if sess_rows:
        b.add(None, 0, {**sess_rows[0], "session_id": f" {sess_rows[0]['session_id']}"})
    b.add("unknown_reference", 1, bad_session_unknown)
    b.add("out_of_range", 1, bad_session_order0)
    b.add("invalid_type", 1, mk(2, session_date="2026/12/08"))
    b.add("missing_value", 1, mk(3, lecture_id=""))
    b.add(
        "duplicate_conflict",
        2,
        mk(4, title="32차시: 겨울방학 보강"),
        mk(4, title="32차시: 겨울방학 보강 (변경)"),
    )
    b.add("invalid_type", 1, mk(5, session_order="3차시"))

    # ---- enrollments: fresh ids too
    b = bad["enrollments"]
    enr_rows = _row_dicts(ref["enrollments"].head(2))
    new_enr = int(w.enr["id"].max()) + 1 if w.enr["id"].size else 5_000_001

    def mke(i: int, **kw: str) -> dict[str, str]:
        return {
            "enrollment_id": str(new_enr + i),
            "lecture_id": lec0,
            "student_id": "299999",
            "status": "ACTIVE",
            "enrolled_at": "2026-11-20 15:04:00",
            **kw,
        }

    bad_enr_unknown = mke(0, lecture_id=str(next(unknown)))
    if enr_rows:
        b.add(
            None,
            0,
            {**enr_rows[0], "status": enr_rows[0]["status"] and f"{enr_rows[0]['status']} "},
        )
    b.add("unknown_reference", 1, bad_enr_unknown)
    b.add("invalid_enum", 1, mke(1, status="active"))
    b.add("missing_value", 1, mke(2, student_id=""))
    b.add("invalid_type", 1, mke(3, enrolled_at="2026/11/20 15:04"))
    b.add("duplicate_conflict", 2, mke(4), mke(4, status="DROPPED"))
    b.add("invalid_enum", 1, mke(5, status="WITHDRAWN"))

    # ---- events: sources are real rows of the first chunk (distinct rows per use)
    enr_lec = dict(zip(w.enr["id"].tolist(), w.lec_id[w.enr["lec"]].tolist(), strict=True))
    sess_lec = dict(zip(w.sess_id.tolist(), w.lec_id[w.sess_lec].tolist(), strict=True))
    by_lec: dict[int, int] = {}
    for sid, lid in sess_lec.items():
        by_lec.setdefault(lid, sid)

    def other_session(enrollment_id: str) -> str | None:
        own = enr_lec[int(enrollment_id)]
        for lid, sid in by_lec.items():
            if lid != own:
                return str(sid)
        return None

    def event_bad(table: str, specs: list[tuple[str | None, Callable[[dict], list[dict]]]]) -> None:
        src = samples.get(table)
        if src is None or src.height == 0:
            return
        rows = _row_dicts(src)
        for i, (reason, make) in enumerate(specs):
            if i >= len(rows):
                break
            made = make(dict(rows[i]))
            made = [m for m in made if m is not None]
            if not made:
                continue
            if reason is None:
                q = 0
            elif reason == "duplicate_conflict":
                q = 2  # the delivered original and the conflicting copy
            elif reason == "unknown_reference":
                q = 1  # identical copies collapse first, then are quarantined once
            else:
                q = len(made)
            bad[table].add(reason, q, *made)

    def ts(table: str) -> str:
        return TS_COLUMNS[table]

    def later(r: dict, table: str, s: int) -> dict:
        return {**r, ts(table): _shift_ts(r[ts(table)], s)}

    def mismatch(r: dict, table: str) -> list[dict]:
        other = other_session(r["enrollment_id"])
        return [] if other is None else [{**later(r, table, 7), "session_id": other}]

    def conflict(r: dict, **kw: Any) -> list[dict]:
        return [{**r, **kw}]  # the original was delivered already: +1 copy here

    att_specs: list[tuple[str | None, Callable[[dict], list[dict]]]] = [
        ("missing_value", lambda r: [{**r, "attendance_type": ""}]),
        ("invalid_enum", lambda r: [{**r, "attendance_type": r["attendance_type"].capitalize()}]),
        ("invalid_type", lambda r: [{**r, "recorded_at": r["recorded_at"].replace("-", "/")}]),
        ("unknown_reference", lambda r: [{**r, "enrollment_id": str(next(unknown))}]),
        ("lecture_mismatch", lambda r: mismatch(r, "attendance")),
        (
            "duplicate_conflict",
            lambda r: conflict(
                r, attendance_type="offline" if r["attendance_type"] == "online" else "online"
            ),
        ),
        (None, lambda r: [r]),
        (
            None,
            lambda r: [
                {
                    **r,
                    "recorded_at": _z_form(r["recorded_at"]),
                    "enrollment_id": f"{r['enrollment_id']}  ",
                }
            ],
        ),
        ("invalid_type", lambda r: [{**r, "recorded_at": r["recorded_at"][:11] + "24:10:00"}]),
        ("missing_value", lambda r: [{**r, "recorded_at": "   "}]),
        ("invalid_enum", lambda r: [{**r, "attendance_type": "present"}]),
        ("unknown_reference", lambda r: [{**r, "session_id": str(next(unknown))}]),
        ("invalid_type", lambda r: [{**r, "enrollment_id": r["enrollment_id"] + ".0"}]),
        (
            "unknown_reference",
            lambda r: [
                {**later(r, "attendance", 3), "enrollment_id": bad_enr_unknown["enrollment_id"]}
            ],
        ),
    ]
    event_bad("attendance", att_specs)

    def other_rate(r: dict) -> str:
        v = int(r["progress_rate"])
        return str(v - 7 if v >= 7 else v + 7)

    vid_specs: list[tuple[str | None, Callable[[dict], list[dict]]]] = [
        ("out_of_range", lambda r: [{**r, "progress_rate": "150"}]),
        ("invalid_type", lambda r: [{**r, "progress_rate": "12.5"}]),
        ("missing_value", lambda r: [{**r, "progress_rate": ""}]),
        ("unknown_reference", lambda r: [{**r, "enrollment_id": str(next(unknown))}]),
        ("lecture_mismatch", lambda r: mismatch(r, "video_progress")),
        ("duplicate_conflict", lambda r: conflict(r, progress_rate=other_rate(r))),
        (None, lambda r: [r]),
        (None, lambda r: [{**r, "progress_rate": f" {r['progress_rate']}"}]),
        ("invalid_type", lambda r: [{**r, "progress_rate": "NaN"}]),
        ("out_of_range", lambda r: [{**r, "progress_rate": "-3"}]),
        ("invalid_type", lambda r: [{**r, "recorded_at": r["recorded_at"].replace("-", ".")}]),
        ("missing_value", lambda r: [{**r, "session_id": "\t"}]),
    ]
    event_bad("video_progress", vid_specs)

    new_sub = iter(range(next_submission_id, next_submission_id + 1000))

    def fresh(r: dict, **kw: str) -> list[dict]:
        return [{**r, "submission_id": str(next(new_sub)), **kw}]

    def sub_conflict(r: dict) -> list[dict]:
        score = float(r["score"]) if r["score"] is not None else None
        return conflict(
            r, score=str(50.0 if score is None else (score + 10 if score <= 90 else score - 10))
        )

    def collapsed_unknown(r: dict) -> list[dict]:
        row = {**r, "submission_id": str(next(new_sub)), "session_id": str(next(unknown))}
        return [row, dict(row)]

    def order0(r: dict) -> list[dict]:
        return fresh(r, session_id=bad_session_order0["session_id"])

    sub_specs: list[tuple[str | None, Callable[[dict], list[dict]]]] = [
        ("invalid_type", lambda r: fresh(r, score="abc")),
        ("invalid_enum", lambda r: fresh(r, kind=r["kind"].upper())),
        ("out_of_range", lambda r: fresh(r, score="-5")),
        ("missing_value", lambda r: fresh(r, submitted_at="")),
        ("unknown_reference", lambda r: fresh(r, enrollment_id=str(next(unknown)))),
        (
            "lecture_mismatch",
            lambda r: (
                [{**fresh(r)[0], "session_id": other_session(r["enrollment_id"])}]
                if other_session(r["enrollment_id"])
                else []
            ),
        ),
        ("duplicate_conflict", sub_conflict),
        (None, lambda r: [r]),
        (
            None,
            lambda r: [
                {
                    **r,
                    "submitted_at": _z_form(r["submitted_at"]),
                    "submission_id": f" {r['submission_id']} ",
                }
            ],
        ),
        (None, lambda r: [{**r, "kind": f"{r['kind']} "}]),
        ("invalid_type", lambda r: fresh(r, score="NaN")),
        ("invalid_type", lambda r: fresh(r, teacher_approved="yes")),
        ("invalid_type", lambda r: fresh(r, submitted_at=r["submitted_at"][:10].replace("-", "/"))),
        ("unknown_reference", collapsed_unknown),
        ("unknown_reference", order0),
        ("invalid_enum", lambda r: fresh(r, kind="quiz")),
        ("invalid_type", lambda r: fresh(r, score="Infinity")),
        ("missing_value", lambda r: fresh(r, kind="")),
    ]
    event_bad("submissions", sub_specs)

    cl_specs: list[tuple[str | None, Callable[[dict], list[dict]]]] = [
        ("invalid_enum", lambda r: [{**later(r, "clinic_requests", 1), "reason": "AUTO_FAIL"}]),
        ("lecture_mismatch", lambda r: mismatch(r, "clinic_requests")),
        ("unknown_reference", lambda r: [{**r, "enrollment_id": str(next(unknown))}]),
        ("invalid_type", lambda r: [{**later(r, "clinic_requests", 2), "approved": "Y"}]),
        ("missing_value", lambda r: [{**r, "requested_at": ""}]),
        (
            "duplicate_conflict",
            lambda r: conflict(
                r,
                approved="false" if r["approved"] == "true" else "true",
                memo="보강 일정 변경, 학부모 확인 완료",
            ),
        ),
        (None, lambda r: [r]),
        (
            "invalid_type",
            lambda r: [{**later(r, "clinic_requests", 3), "requested_at": "2026-13-01 10:00"}],
        ),
    ]
    event_bad("clinic_requests", cl_specs)
    return bad


# ---------------------------------------------------------------------------------------------
# Entry point.


class OutputNotOurs(ValueError):
    """The output folder holds files this generator did not write; nothing was touched."""


def _clear_previous(out: Path) -> None:
    """Make `out` ready for a new output: remove what an earlier run of this generator wrote
    there, and only that; refuse a folder holding anything else (see the module doc)."""
    manifest_path = out / MANIFEST
    manifest = None
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        if entries:
            raise OutputNotOurs(
                f"{out} is not empty and holds no {MANIFEST} of `progress generate` (found "
                f"{', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}): "
                "refusing to write into it; choose a new or empty folder"
            )
        return
    if "files" in manifest:
        written = [out / rel for rel in manifest["files"]]
    else:  # a manifest from before the list of files: the contract files it always wrote
        written = [out / f"{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")]
        written += [p for t in TABLES if (out / t).is_dir() for p in (out / t).glob("part-*")]
    for path in written:
        if path.resolve().is_relative_to(out.resolve()):
            path.unlink(missing_ok=True)
            folder = path.parent
            if folder != out and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    manifest_path.unlink()
    shutil.rmtree(out / ".clinic_requests.spool", ignore_errors=True)


def generate_extracts(
    out: Path,
    *,
    academies: int = 2,
    enrollments: int = 300,
    seed: int = 0,
    fmt: Literal["csv", "parquet"] = "csv",
    bad_rows: bool = True,
    outcomes: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write realistic synthetic extracts for the 8 contract tables, and `outcomes` unless
    turned off, into `out`; return rows written per table. Raises OutputNotOurs when `out`
    holds files this generator did not write."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if academies < 1 or enrollments < 0:
        raise ValueError("academies must be >= 1 and enrollments >= 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)

    root = np.random.default_rng(seed)
    world = _build_world(root, academies, enrollments)
    chunk = max(1, min(CHUNK_ENROLLMENTS, math.ceil(enrollments / 4)))
    n_chunks = max(1, math.ceil(enrollments / chunk))
    chunk_rngs = root.spawn(n_chunks)
    write_rng, bad_rng = root.spawn(2)
    writer = _Writer(out, fmt, write_rng, pad=bad_rows)
    ref = _reference_frames(world)

    # Reference tables first (their bad rows only need the world).
    samples: dict[str, pl.DataFrame] = {}
    totals: dict[str, int] = dict.fromkeys(TABLES, 0)
    expected: dict[str, dict[str, int]] = {t: {} for t in TABLES}
    collapsed: dict[str, int] = dict.fromkeys(TABLES, 0)
    bad: dict[str, _Bad] | None = None

    sub_id = 1
    for c in range(n_chunks):
        lo, hi = c * chunk, min(enrollments, (c + 1) * chunk)
        frames = _simulate_chunk(world, lo, hi, chunk_rngs[c], sub_id)
        sub_id += frames["submissions"].height
        for t, df in frames.items():
            totals[t] += df.height
        if c == 0:
            for t, df in frames.items():
                k = min(df.height, 40)
                idx = np.sort(bad_rng.choice(df.height, k, replace=False)) if k else []
                samples[t] = df[idx]
        final = c == n_chunks - 1
        chunk_bad: dict[str, pl.DataFrame] = {}
        if final and bad_rows:
            bad = _build_bad(world, ref, samples, sub_id)
            for t in TABLES:
                if t == "outcomes":  # from its own stream, below
                    continue
                n_clean = totals[t] if t in frames else ref[t].height
                frame, exp, col = bad[t].take(n_clean)
                chunk_bad[t] = frame
                expected[t] = exp
                collapsed[t] = col
        for t in FOLDER_TABLES:
            b = chunk_bad.get(t)
            # one daily drop of submissions comes from another export tool
            messy = bad_rows and t == "submissions" and c == min(1, n_chunks - 1)
            if fmt == "csv":
                writer.write(t, frames[t], f"{t}/part-{c:03d}", style=c % 3, bad=b, messy=messy)
            else:
                writer.write(t, frames[t], f"{t}/part-{c:03d}", style=c % 3, messy=messy)
                if b is not None and b.height:
                    writer.write_text(t, b, f"{t}/part-{n_chunks:03d}")
        writer.append_clinic(frames["clinic_requests"], chunk_bad.get("clinic_requests"), final)
        if progress is not None:
            progress(hi, enrollments)

    for t in ("lectures", "sessions", "policies", "enrollments"):
        b = None
        if bad is not None:
            frame, _, _ = bad[t].take(ref[t].height)
            b = frame
        writer.write(t, ref[t], t, bad=b)

    if outcomes:
        # its own stream (and its own writer's): the other files are the same with or without
        out_rng = np.random.default_rng([seed, OUTCOMES_STREAM])
        results = _simulate_outcomes(world, out_rng)
        outcome_writer = _Writer(out, fmt, out_rng, pad=bad_rows)
        b = None
        if bad_rows:
            b, expected["outcomes"], collapsed["outcomes"] = _outcome_bad(results, out_rng).take(
                results.height
            )
        outcome_writer.write("outcomes", results, "outcomes", bad=b)
        writer.rows["outcomes"] = outcome_writer.rows["outcomes"]
        writer.files += outcome_writer.files

    manifest = {
        "generator": GENERATOR,
        "args": {
            "academies": academies,
            "enrollments": enrollments,
            "seed": seed,
            "fmt": fmt,
            "bad_rows": bad_rows,
            "outcomes": outcomes,
        },
        "extract_at": "2026-11-25 06:00:00",
        "rows": writer.rows,
        "expected_quarantine": expected,
        "collapsed_duplicates": collapsed,
        "files": sorted(writer.files),
    }
    (out / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return dict(writer.rows)
