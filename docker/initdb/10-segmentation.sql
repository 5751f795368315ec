-- The customer database and its logins (local compose stack only; the passwords are placeholders).
-- `segmentation` owns the database and is used only by airflow-init to apply migrations and roles
-- (`segmentation init-db --roles`). The services log in with least privilege:
--   segmentation_worker   clean, features and scoring (group segmentation_pipeline: reads model_versions only);
--   segmentation_trainer  registers and promotes model versions (group segmentation_training);
--   segmentation_web      the Segmentation pages in the api-server (group segmentation_ui: reads only);
--   segmentation_reader   analysts (group segmentation_analyst: the views only).
-- The groups are created here so that the logins can join them; sql/roles.sql grants their privileges.
CREATE ROLE segmentation LOGIN PASSWORD 'segmentation';
CREATE DATABASE segmentation OWNER segmentation;
CREATE ROLE segmentation_pipeline NOLOGIN;
CREATE ROLE segmentation_training NOLOGIN;
CREATE ROLE segmentation_analyst NOLOGIN;
CREATE ROLE segmentation_ui NOLOGIN;
CREATE ROLE segmentation_worker LOGIN PASSWORD 'segmentation_worker' IN ROLE segmentation_pipeline;
CREATE ROLE segmentation_trainer LOGIN PASSWORD 'segmentation_trainer' IN ROLE segmentation_training;
CREATE ROLE segmentation_web LOGIN PASSWORD 'segmentation_web' IN ROLE segmentation_ui;
CREATE ROLE segmentation_reader LOGIN PASSWORD 'segmentation_reader' IN ROLE segmentation_analyst;
