"""Purchase data sets (real grocery data and users' own files) as one columnar type."""
