"""SQLite state: one writer, group commit, numbered migrations."""
