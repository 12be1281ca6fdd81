-- The registry (database sslight, made by the image from POSTGRES_DB), Optuna and MLflow each
-- get a database: all three keep their Alembic revision in a table named alembic_version.
CREATE DATABASE optuna OWNER sslight;
CREATE DATABASE mlflow OWNER sslight;
