"""Grid files: YAML documents expanded into cells (``spec``), their ``${ENV}`` values (``env``),
cell names (``names``) and the parsing of bases and axes (``parse``)."""
