DROP INDEX IF EXISTS learner_skill_states_source_id;
ALTER TABLE learner_skill_states DROP COLUMN IF EXISTS source_id;
DROP INDEX IF EXISTS daily_progress_source_id;
ALTER TABLE daily_progress DROP COLUMN IF EXISTS source_id;
