-- Question templates, country-specific context, and the prerequisite graph.

CREATE TABLE question_templates (
    template_id     UUID PRIMARY KEY,
    kc_id           UUID NOT NULL REFERENCES knowledge_components (kc_id),
    template_text   TEXT NOT NULL,
    variables       JSONB NOT NULL,
    answer_formula  TEXT,
    difficulty_tier SMALLINT,
    country_codes   TEXT[],
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMP DEFAULT NOW()
);

CREATE TABLE cultural_contexts (
    context_id   UUID PRIMARY KEY,
    country_code VARCHAR(2) NOT NULL,
    kc_id        UUID REFERENCES knowledge_components (kc_id),
    title        VARCHAR(255) NOT NULL,
    context_text TEXT,
    comparisons  JSONB,
    warnings     TEXT[],
    created_at   TIMESTAMP DEFAULT NOW()
);

CREATE INDEX idx_cultural_contexts_country ON cultural_contexts (country_code);

CREATE TABLE kc_prerequisites (
    kc_id              UUID NOT NULL REFERENCES knowledge_components (kc_id),
    prerequisite_kc_id UUID NOT NULL REFERENCES knowledge_components (kc_id),
    is_required        BOOLEAN NOT NULL DEFAULT TRUE,
    min_mastery        NUMERIC(3, 2),
    PRIMARY KEY (kc_id, prerequisite_kc_id),
    CHECK (kc_id <> prerequisite_kc_id)
);
