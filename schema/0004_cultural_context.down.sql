DROP TABLE IF EXISTS kc_prerequisites;
DROP TABLE IF EXISTS cultural_contexts;
DROP TABLE IF EXISTS question_templates;
