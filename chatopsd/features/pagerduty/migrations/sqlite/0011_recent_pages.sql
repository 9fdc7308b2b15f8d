-- The last page per target ("ic", "responders", "person:<id>"): a second `!ic page` within
-- pagerduty.repage_window_seconds answers "already paged at ... by ..." instead of paging again.
CREATE TABLE recent_pages (
    target TEXT PRIMARY KEY,
    at     REAL NOT NULL,
    actor  TEXT NOT NULL,
    url    TEXT NOT NULL
) WITHOUT ROWID;
