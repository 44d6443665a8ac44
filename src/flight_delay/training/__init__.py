"""Training LightGBM models on flights held in memory (the Spark pipeline feeds the same code)."""
