-- PostgreSQL twin of ../sqlite/0096_pd_click_event.sql.
ALTER TABLE pd_click_claims ADD COLUMN event TEXT;
