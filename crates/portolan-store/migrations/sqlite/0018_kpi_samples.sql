-- Time series of KPIs: one value per metric, team ('*' for all of them, '' for no team), label
-- (a scorecard level, ...) and day (the UTC day's first millisecond). A day's value is replaced
-- while the day lasts, so it is that day's last sample.
CREATE TABLE kpi_samples (
    metric TEXT NOT NULL,
    day    INTEGER NOT NULL,
    team   TEXT NOT NULL,
    label  TEXT NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, day, team, label)
) STRICT;
CREATE INDEX kpi_samples_day ON kpi_samples (day);
