DROP TABLE IF EXISTS item_kc_mappings;
DROP TABLE IF EXISTS learning_items;
DROP TABLE IF EXISTS knowledge_components;
DROP TABLE IF EXISTS learners;
