-- The chat event a click claim was made for. A command whose instance died is
-- handled again by a survivor (the events ledger's take-over): that same event may take its
-- own claim over at once, instead of being told it was "already acknowledged" by itself.
ALTER TABLE pd_click_claims ADD COLUMN event TEXT;
