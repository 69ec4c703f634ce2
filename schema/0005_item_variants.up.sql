-- The country-specific wording of a learning item, one row per country:
-- the item's `cultural_variants` object, keyed by country code.

CREATE TABLE learning_item_variants (
    item_id      UUID NOT NULL REFERENCES learning_items (item_id),
    country_code VARCHAR(2) NOT NULL,
    question     TEXT NOT NULL,
    PRIMARY KEY (item_id, country_code)
);
