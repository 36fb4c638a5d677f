"""Asset checks, declared per layer next to the assets they guard."""

from checks.extract_checks import extract_checks

# The marts' and the raw tables' schema checks are reported by their assets (check_specs).
all_checks = [*extract_checks]
