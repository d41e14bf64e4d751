"""The soak (`nox -s soak`): the whole stack under a mixed workload at half its measured maximum."""
