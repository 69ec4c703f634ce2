DROP TABLE IF EXISTS interactions;
DROP TABLE IF EXISTS learner_skill_states;
