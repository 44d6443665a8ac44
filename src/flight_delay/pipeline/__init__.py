"""The Spark side: the dataset, the case's questions, wind enrichment, features and training."""
