"""Domain types shared by the cores: purchase histories, dates, the catalog and archetypes."""
