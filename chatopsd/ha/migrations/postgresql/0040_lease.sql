-- PostgreSQL twin of ../sqlite/0040_lease.sql.
CREATE TABLE lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token      BIGINT NOT NULL,
    holder     TEXT,
    renewed_at DOUBLE PRECISION NOT NULL
);
INSERT INTO lease (id, token, holder, renewed_at) VALUES (1, 0, NULL, 0);

CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    seen_at    DOUBLE PRECISION NOT NULL
);
