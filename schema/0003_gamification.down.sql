DROP TABLE IF EXISTS daily_progress;
DROP TABLE IF EXISTS learner_achievements;
DROP TABLE IF EXISTS achievements;
