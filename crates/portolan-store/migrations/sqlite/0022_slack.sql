-- Which Portolan user each Slack user acts as, and how the link was made (`email`, `link`).
CREATE TABLE slack_links (
    team_id    TEXT NOT NULL,
    slack_user TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    linked_at  INTEGER NOT NULL,
    method     TEXT NOT NULL,
    PRIMARY KEY (team_id, slack_user)
) STRICT;
CREATE INDEX slack_links_by_user ON slack_links (user_id);

-- The Slack message a run started from Slack is told about: its status updates go in its thread.
CREATE TABLE slack_threads (
    run_id  TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts      TEXT NOT NULL
) STRICT;
