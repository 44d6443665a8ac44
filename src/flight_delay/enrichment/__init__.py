"""Wind enrichment for the final question: airport coordinates, daily wind, the join in Spark."""
