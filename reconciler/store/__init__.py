"""The database: schema, migrations, reading the actual state. Shared by reconciler and serve."""
