-- Each person's inbox: what they were told, when, whether they read it, and how its webhook
-- delivery went (NULL when it had none).
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    topic      TEXT NOT NULL,
    title      TEXT NOT NULL,
    link       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at    BIGINT,
    delivery   TEXT
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at);
CREATE INDEX notifications_by_age ON notifications (created_at);

-- Each person's notification preferences, as a document.
CREATE TABLE notification_preferences (
    user_id  TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
