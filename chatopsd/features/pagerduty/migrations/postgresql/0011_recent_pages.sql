-- PostgreSQL twin of ../sqlite/0011_recent_pages.sql.
CREATE TABLE recent_pages (
    target TEXT PRIMARY KEY,
    at     DOUBLE PRECISION NOT NULL,
    actor  TEXT NOT NULL,
    url    TEXT NOT NULL
);
