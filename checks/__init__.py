"""Asset checks, declared per layer next to the assets they guard."""

from checks.extract_checks import extract_checks
from checks.mart_checks import mart_checks

all_checks = [*extract_checks, *mart_checks]
