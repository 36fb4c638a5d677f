"""When the marts are due, in one place (Dagster-free, so `progress status` starts fast).

The daily schedule runs at 06:00 Asia/Seoul (`PROGRESS_SCHEDULE_CRON` overrides it); a
publication older than 26 hours is late (WARN: the 06:00 run is late or failed), older than
30 hours stale (FAIL: staff are reading yesterday's list by noon).
"""

from datetime import timedelta

DEFAULT_CRON = "0 6 * * *"
CRON_ENV = "PROGRESS_SCHEDULE_CRON"
WARN_AFTER = timedelta(hours=26)
FAIL_AFTER = timedelta(hours=30)
