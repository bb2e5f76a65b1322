#!/usr/bin/env bash
# The crash suite at scale: the CLI test that kills the server with SIGKILL again and again under a
# stream of runs, then kills runners in the middle of their tasks, with KILLS kills of each
# (default 100; CI runs it with 10 and 5). With PORTOLAN_TEST_DATABASE_URL set (a PostgreSQL server
# where it may create databases), also the test that kills one of two PostgreSQL replicas KILLS
# times while the other serves. Each prints what it counted and fails on a lost, stuck or foreign
# run, or an audit log that does not verify.
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-100}"
PORTOLAN_CRASH_KILLS="$kills" cargo test -p portolan --test cli -- --exact --nocapture \
  runs::no_accepted_run_is_lost_to_repeated_sigkills_of_the_server_and_its_runners
if [ -n "${PORTOLAN_TEST_DATABASE_URL:-}" ]; then
  PORTOLAN_CRASH_KILLS="$kills" cargo test -p portolan --test cli -- --exact --nocapture \
    runs::no_accepted_run_is_lost_when_one_of_two_postgres_replicas_is_killed_again_and_again
fi
