-- The customer database and the role the pipeline uses (local compose stack only).
CREATE ROLE segmentation LOGIN PASSWORD 'segmentation';
CREATE DATABASE segmentation OWNER segmentation;
