-- Learners, the knowledge-component tree, learning items and their skill mappings.

-- Exactly the seed's "PostgreSQL Structure" for Learner.
CREATE TABLE learners (
    learner_id                 UUID PRIMARY KEY,
    email                      VARCHAR(255) NOT NULL UNIQUE,
    display_name               VARCHAR(255),
    native_language            VARCHAR(50),
    english_proficiency        VARCHAR(50) DEFAULT 'intermediate',
    immigration_status         VARCHAR(50),
    financial_experience_level VARCHAR(50) DEFAULT 'novice',
    daily_goal_minutes         INTEGER DEFAULT 10,
    timezone                   VARCHAR(50) DEFAULT 'America/New_York',
    streak_count               INTEGER DEFAULT 0,
    streak_last_date           DATE,
    total_xp                   INTEGER DEFAULT 0,
    country_of_origin          VARCHAR(100),
    visa_type                  VARCHAR(50),
    has_ssn                    BOOLEAN,
    sends_remittances          BOOLEAN,
    financial_goals            JSON,
    created_at                 TIMESTAMP DEFAULT NOW(),
    last_active_at             TIMESTAMP
);

-- Skills and concepts, a tree through parent_kc_id.
CREATE TABLE knowledge_components (
    kc_id             UUID PRIMARY KEY,
    slug              VARCHAR(120) NOT NULL UNIQUE,
    name              VARCHAR(255) NOT NULL,
    description       TEXT,
    domain            VARCHAR(50),
    parent_kc_id      UUID REFERENCES knowledge_components (kc_id),
    difficulty_tier   SMALLINT CHECK (difficulty_tier BETWEEN 1 AND 5),
    bloom_level       VARCHAR(20),
    estimated_minutes INTEGER,
    tags              TEXT[],
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMP DEFAULT NOW(),
    updated_at        TIMESTAMP
);

CREATE INDEX idx_knowledge_components_parent ON knowledge_components (parent_kc_id);

-- Questions, videos and interactive content, with IRT parameters.
CREATE TABLE learning_items (
    item_id           UUID PRIMARY KEY,
    item_type         VARCHAR(30) NOT NULL,
    title             VARCHAR(255) NOT NULL,
    content           JSONB NOT NULL,
    difficulty        DOUBLE PRECISION,
    discrimination    DOUBLE PRECISION,
    guessing          NUMERIC(4, 3),
    media_url         VARCHAR(500),
    cultural_variants JSONB,
    language          VARCHAR(10) NOT NULL DEFAULT 'en',
    estimated_seconds INTEGER,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        TIMESTAMP DEFAULT NOW(),
    updated_at        TIMESTAMP
);

-- Many-to-many between items and skills, weighted.
CREATE TABLE item_kc_mappings (
    item_id UUID NOT NULL REFERENCES learning_items (item_id),
    kc_id   UUID NOT NULL REFERENCES knowledge_components (kc_id),
    weight  NUMERIC(4, 3) NOT NULL DEFAULT 1.0,
    PRIMARY KEY (item_id, kc_id)
);
