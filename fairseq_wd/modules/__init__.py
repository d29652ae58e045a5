"""Building blocks shared by tasks, models and criterions."""
