-- The MongoDB document each row came from, for the two tables whose key
-- is natural (learner and day, learner and skill): `finlit-map sync` finds
-- a changed or deleted document's row by it during a zero-downtime
-- cut-over (a delete event carries nothing but the `_id`).

ALTER TABLE daily_progress ADD COLUMN source_id UUID;
CREATE INDEX daily_progress_source_id ON daily_progress (source_id);
ALTER TABLE learner_skill_states ADD COLUMN source_id UUID;
CREATE INDEX learner_skill_states_source_id ON learner_skill_states (source_id);
