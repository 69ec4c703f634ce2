-- Badges, learners' progress towards them, and daily goals and streaks.

CREATE TABLE achievements (
    achievement_id UUID PRIMARY KEY,
    code           VARCHAR(50) NOT NULL UNIQUE,
    name           VARCHAR(100) NOT NULL,
    description    TEXT,
    category       VARCHAR(30),
    icon_url       VARCHAR(500),
    xp_reward      INTEGER NOT NULL DEFAULT 0,
    criteria       JSONB,
    is_secret      BOOLEAN NOT NULL DEFAULT FALSE,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMP DEFAULT NOW()
);

CREATE TABLE learner_achievements (
    learner_achievement_id UUID PRIMARY KEY,
    learner_id             UUID NOT NULL REFERENCES learners (learner_id),
    achievement_id         UUID NOT NULL REFERENCES achievements (achievement_id),
    progress               INTEGER NOT NULL DEFAULT 0,
    target                 INTEGER,
    is_completed           BOOLEAN NOT NULL DEFAULT FALSE,
    earned_at              TIMESTAMPTZ,
    created_at             TIMESTAMP DEFAULT NOW(),
    UNIQUE (learner_id, achievement_id)
);

CREATE TABLE daily_progress (
    learner_id      UUID NOT NULL REFERENCES learners (learner_id),
    date            DATE NOT NULL,
    minutes_spent   INTEGER NOT NULL DEFAULT 0,
    goal_minutes    INTEGER NOT NULL DEFAULT 10,
    goal_met        BOOLEAN NOT NULL DEFAULT FALSE,
    xp_earned       INTEGER NOT NULL DEFAULT 0,
    items_completed INTEGER NOT NULL DEFAULT 0,
    streak_day      INTEGER,
    PRIMARY KEY (learner_id, date)
);
