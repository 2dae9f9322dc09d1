"""Settings: the schema of every section, its defaults, and how a file and the environment become one value."""
