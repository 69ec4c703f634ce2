-- Per-learner mastery (with FSRS spaced-repetition state) and the interaction log.

CREATE TABLE learner_skill_states (
    learner_id          UUID NOT NULL REFERENCES learners (learner_id),
    kc_id               UUID NOT NULL REFERENCES knowledge_components (kc_id),
    mastery_probability DOUBLE PRECISION NOT NULL DEFAULT 0,
    status              VARCHAR(20) NOT NULL DEFAULT 'locked',
    is_unlocked         BOOLEAN NOT NULL DEFAULT FALSE,
    is_mastered         BOOLEAN NOT NULL DEFAULT FALSE,
    attempts            INTEGER NOT NULL DEFAULT 0,
    correct_attempts    INTEGER NOT NULL DEFAULT 0,
    fsrs_stability      DOUBLE PRECISION,
    fsrs_difficulty     DOUBLE PRECISION,
    fsrs_reps           INTEGER,
    fsrs_lapses         INTEGER,
    fsrs_state          VARCHAR(20),
    last_reviewed_at    TIMESTAMPTZ,
    next_review_at      TIMESTAMPTZ,
    unlocked_at         TIMESTAMPTZ,
    mastered_at         TIMESTAMPTZ,
    created_at          TIMESTAMP DEFAULT NOW(),
    updated_at          TIMESTAMP,
    PRIMARY KEY (learner_id, kc_id)
);

CREATE INDEX idx_learner_skill_states_due ON learner_skill_states (learner_id, next_review_at);

CREATE TABLE interactions (
    interaction_id   UUID PRIMARY KEY,
    learner_id       UUID NOT NULL REFERENCES learners (learner_id),
    item_id          UUID NOT NULL REFERENCES learning_items (item_id),
    kc_id            UUID REFERENCES knowledge_components (kc_id),
    session_id       VARCHAR(64),
    interaction_type VARCHAR(30) NOT NULL DEFAULT 'answer',
    response         JSONB,
    is_correct       BOOLEAN,
    score            NUMERIC(5, 4),
    response_time_ms INTEGER,
    hints_used       SMALLINT NOT NULL DEFAULT 0,
    attempt_number   SMALLINT NOT NULL DEFAULT 1,
    fsrs_rating      SMALLINT CHECK (fsrs_rating BETWEEN 1 AND 4),
    xp_earned        INTEGER NOT NULL DEFAULT 0,
    device           VARCHAR(20),
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_interactions_learner_created ON interactions (learner_id, created_at);
CREATE INDEX idx_interactions_item ON interactions (item_id);
