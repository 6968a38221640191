"""The machinery: configuration, records, input pipeline, engine. Never imports `project/`."""
