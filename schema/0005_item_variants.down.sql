DROP TABLE IF EXISTS learning_item_variants;
